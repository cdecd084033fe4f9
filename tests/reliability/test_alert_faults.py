"""Faults on the alert side: SNS failing and throttling, a crash between publish and mark-sent, a poison
message on the alert queue."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from fraud_common.alerts import SNS_BATCH

from local.scheduler import RECEIVE_WAIT_S
from tests.reliability.conftest import (
    Injector,
    Pipeline,
    error_response,
    handler_module,
    partial_publish_batch,
    record,
    wait_for,
)

pytestmark = pytest.mark.reliability


def _stream(pipeline: Pipeline, n: int) -> set[int]:
    transactions = pipeline.next_transactions(n)
    pipeline.write(transactions)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    pipeline.wait_ingested(ids)
    return ids


def test_sns_failing_then_recovering_sends_every_alert_once(pipeline: Pipeline) -> None:
    ids = _stream(pipeline, 200)
    before = pipeline.snapshot(ids)
    # 1) SNS down: every PublishBatch throttled. Scores and the outbox fill; nothing leaves it.
    with Injector(None, "sns", "PublishBatch", lambda _p, _n: error_response("Throttling")) as down:
        first = pipeline.score_and_alert()
    during = pipeline.snapshot(ids)
    assert down.injected >= 1 and first["totals"]["published"] == 0
    assert during.scored_distinct == len(ids) and during.outbox_pending == during.outbox_rows > 0
    # 2) SNS partly back: one entry in three of each batch fails; the rest is published and marked sent.
    with Injector(
        None, "sns", "PublishBatch", lambda p, _n: partial_publish_batch(p, lambda i: i % 3 == 0)
    ) as partial:
        second = pipeline.score_and_alert()
    assert partial.injected >= 1 and second["totals"]["failed"] > 0 and second["totals"]["published"] > 0
    still_pending = pipeline.snapshot(ids).outbox_pending
    assert still_pending == second["totals"]["failed"]
    # 3) SNS healthy: the rest goes out, once.
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    alerted = {int(tx) for tx in pipeline.cases_for(ids)[0]}
    assert {tx: pipeline.deliveries.get(tx, 0) for tx in alerted} == dict.fromkeys(alerted, 1), (
        "a failed entry was delivered anyway, or an accepted one twice"
    )
    record(
        "SNS fails, throttles, then recovers",
        f"{down.injected} PublishBatch calls throttled whole, then {partial.injected} with 1 in 3 entries failed",
        before,
        after,
        during={"outbox_pending": during.outbox_pending, "pending_after_partial": still_pending},
    )


def test_crash_between_publish_and_mark_sent_is_absorbed_by_the_conditional_case_write(
    pipeline: Pipeline,
) -> None:
    ids = _stream(pipeline, 200)
    before = pipeline.snapshot(ids)
    api_client = handler_module(pipeline.stack, "score_and_alert")._dependencies()[0].client

    def crash_on_mark_sent(params: dict, _n: int) -> None:
        if "UPDATE fraud_alerts" in params.get("Sql", ""):
            raise SystemExit("injected crash: the function died after SNS accepted the batch")

    crash = Injector(api_client, "redshift-data", "ExecuteStatement", crash_on_mark_sent)
    with crash, pytest.raises(SystemExit):
        pipeline.score_and_alert()
    assert crash.injected == 1
    during = pipeline.snapshot(ids)
    assert during.outbox_sent == 0 and during.outbox_pending == during.outbox_rows > 0
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    alerted = set(pipeline.cases_for(ids)[0])
    # The batch SNS accepted before the crash is published again by the re-run: delivered twice.
    expected = len(alerted) + min(SNS_BATCH, during.outbox_rows)
    wait_for(lambda: sum(pipeline.deliveries.get(tx, 0) for tx in alerted) >= expected, 30, "both deliveries")
    deliveries = {tx: pipeline.deliveries.get(tx, 0) for tx in alerted}
    duplicated = {tx for tx, n in deliveries.items() if n == 2}
    assert len(duplicated) == min(SNS_BATCH, during.outbox_rows) and set(deliveries.values()) <= {1, 2}
    cases, cards = pipeline.cases_for(ids)
    for tx in duplicated:  # delivered twice, acted on once: one case, the card locked once for it
        card = cards[int(cases[tx]["customer_id"])]
        assert str(tx) in card["transaction_ids"]
        assert int(card["lock_count"]) == len(card["transaction_ids"])
    record(
        "crash between publish and mark-sent",
        "score_and_alert killed at its first mark_alert_sent (after SNS accepted the batch)",
        before,
        after,
        delivered_twice=len(duplicated),
    )


def test_poison_message_goes_to_the_dlq_while_the_rest_flows(pipeline: Pipeline) -> None:
    sqs = boto3.client("sqs")
    queues = pipeline.stack.resources.queues
    queue_url = next(url for name, url in queues.items() if name == "AlertActionsQueue")
    dlq_url = next(url for name, url in queues.items() if name == "AlertActionsDLQ")
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]["RedrivePolicy"]
    )
    max_receives = int(policy["maxReceiveCount"])
    original = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"
    ]
    # The template's 180 s visibility timeout, shortened so that the redrive count is reached in seconds.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "2"})
    # A receive already waiting took the old timeout: a poison message it got would stay hidden for 180 s.
    time.sleep(RECEIVE_WAIT_S + 0.5)
    try:
        ids = _stream(pipeline, 150)
        before = pipeline.snapshot(ids)
        dlq_before = _count(sqs, dlq_url)
        poison = ["this is not an alert", json.dumps({"transaction_id": "x", "customer_id": 1})]
        for body in poison:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        after = pipeline.check_invariants(ids, pipeline.drain(ids))
        wait_for(
            lambda: _count(sqs, dlq_url) - dlq_before >= len(poison), 120, "the poison messages in the DLQ", 1
        )
        bodies = _bodies(sqs, dlq_url)
    finally:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=original)
    assert sorted(poison) == sorted(b for b in bodies if b in poison)
    record(
        "poison message on the alert queue",
        f"{len(poison)} poison messages (not JSON; no integer ids); redrive after {max_receives} receives",
        before,
        after,
        dlq=len(bodies),
        act_on_alert_errors=pipeline.actor.stats["act_on_alert"].errors,
    )


def _count(sqs: object, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _bodies(sqs: object, url: str) -> list[str]:
    time.sleep(0.5)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages", []
    )
    return [m["Body"] for m in messages]
