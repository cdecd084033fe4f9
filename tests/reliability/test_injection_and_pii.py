"""Security through the running pipeline: injection strings through every entry point are inert, and
the logs of a run that sends alerts (with names, e-mails and phones) never hold an e-mail or a phone."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from fraud_common import queries
from fraud_common.dataapi import StatementError

from tests.reliability.conftest import Pipeline, record, wait_for

pytestmark = pytest.mark.reliability

OUTSIDE = 2 * 10**12
INJECTIONS = [
    "'; DROP TABLE fraud_scores; --",
    "1 OR 1=1",
    "x\\'; DELETE FROM fraud_alerts; --",
    '"; DROP TABLE cust_payment_tx_history; --',
    "$$; TRUNCATE fraud_alerts; $$",
]


def _tables(pipeline: Pipeline) -> dict[str, int]:
    return {
        t: int(pipeline.api.query(f"SELECT count(*) AS n FROM {t}")[0]["n"])  # fixed names, no input
        for t in (
            "cust_payment_tx_history",
            "customer_info",
            "fraud_scores",
            "fraud_alerts",
            "model_registry",
        )
    }


def test_injection_strings_are_inert_through_every_entry_point(pipeline: Pipeline) -> None:
    tables_before = _tables(pipeline)
    # 1) The stream: injection in every field of records; a valid record carrying them in an extra field.
    transactions = pipeline.next_transactions(20)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    carried = []
    for tx in transactions:
        body = json.loads(pipeline.encode([tx])[0])
        body["NOTE"] = INJECTIONS[tx.TRANSACTION_ID % len(INJECTIONS)]
        carried.append((json.dumps(body).encode(), str(tx.CUSTOMER_ID)))
    hostile = [
        (
            json.dumps(
                {"TRANSACTION_ID": OUTSIDE + i, field: value, "CUSTOMER_ID": 1, "TERMINAL_ID": 1}
            ).encode(),
            "x",
        )
        for i, (field, value) in enumerate(
            (f, v) for f in ("TX_DATETIME", "TX_AMOUNT", "TERMINAL_ID", "TRANSACTION_ID") for v in INJECTIONS
        )
    ]
    pipeline.put_raw(carried + hostile)
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    # 2) Data API parameters, over HTTP, into the named queries the functions run.
    for value in INJECTIONS:
        assert pipeline.api.query("SELECT :v AS v", {"v": value}) == [{"v": value}]
        result = queries.run(
            pipeline.api,
            "mark_alert_sent",
            pipeline.sql.placeholders(),
            {"message_ids": json.dumps({str(OUTSIDE): value})},
        )
        assert result.rows_affected == 0
        try:  # not a JSON object: Redshift's JSON error (the emulator may skip it when no row is pending)
            outcome = queries.run(
                pipeline.api, "mark_alert_sent", pipeline.sql.placeholders(), {"message_ids": value}
            )
        except StatementError as exc:
            assert "json" in exc.message.lower() or "invalid" in exc.message.lower(), exc.message
        else:
            assert outcome.rows_affected == 0
    # 3) A message on the alert queue: strings reach DynamoDB as values, never as expressions.
    queue_url = pipeline.stack.resources.queues["AlertActionsQueue"]
    alert = {
        "transaction_id": OUTSIDE + 99,
        "customer_id": 7,
        "reasons": INJECTIONS[0],
        "model_version": INJECTIONS[3],
    }
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(alert))
    cases = wait_for(lambda: pipeline.cases_for({OUTSIDE + 99})[0], 30, "the hostile alert's case")
    assert cases[OUTSIDE + 99]["reasons"] == INJECTIONS[0]
    assert cases[OUTSIDE + 99]["model_version"] == INJECTIONS[3]
    tables_after = _tables(pipeline)
    assert tables_after["cust_payment_tx_history"] == tables_before["cust_payment_tx_history"]
    assert tables_after["customer_info"] == tables_before["customer_info"]
    assert tables_after["fraud_scores"] == tables_before["fraud_scores"] + len(ids)
    assert tables_after["model_registry"] == tables_before["model_registry"]
    leaked = pipeline.api.query(
        "SELECT count(*) AS n FROM fraud_scores WHERE transaction_id >= :lo", {"lo": OUTSIDE}
    )
    assert int(leaked[0]["n"]) == 0
    record(
        "injection through every entry point",
        f"{len(hostile)} hostile stream records, {len(carried)} valid ones carrying injection text, "
        f"{3 * len(INJECTIONS)} hostile Data API parameters, 1 hostile alert message",
        tables_before,
        tables_after,
        scored=after.scored_rows,
    )


def test_logs_of_an_alerting_run_hold_no_email_or_phone(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.INFO)  # wire dumps are not our logs
    transactions = pipeline.next_transactions(120)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    pipeline.write(transactions)
    boto3.client("sqs").send_message(
        QueueUrl=pipeline.stack.resources.queues["AlertActionsQueue"], MessageBody="poison: not an alert"
    )
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    assert after.outbox_sent > 0, "alerts carrying PII must have gone through for the scan to mean anything"
    captured = capsys.readouterr()
    text = "\n".join(
        [captured.out, captured.err] + [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    )
    assert "cards locked" in text  # the handlers' logs were captured
    alerted_customers = {int(c["customer_id"]) for c in pipeline.cases_for(ids)[0].values()}
    pii = [
        value
        for c in pipeline.customer_info
        if int(c["CUSTOMER_ID"] if "CUSTOMER_ID" in c else c["customer_id"]) in alerted_customers
        for value in (c.get("email_address"), c.get("phone_number"))
        if value
    ]
    assert pii
    found = [value for value in pii if value in text]
    assert found == [], f"{len(found)} e-mails/phones in the logs, e.g. {found[:2]}"
    record(
        "PII in logs",
        f"scan of {len(caplog.records)} log records + stdout/stderr of an alerting run for "
        f"{len(pii)} e-mails/phones of alerted customers",
        {"found": "n/a"},
        {"found": len(found), "alerts": after.outbox_sent},
    )
