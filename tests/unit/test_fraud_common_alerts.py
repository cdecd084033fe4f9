"""fraud_common.alerts, actions and training: per-entry SNS failures (Stubber), message attributes,
batch card locks exactly once per alerted transaction (moto), promotion rule."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY
from fraud_common import actions, alerts, queries
from fraud_common.actions import lock_cards
from fraud_common.alerts import message_attributes, publish_batch
from fraud_common.dataapi import DataApi, StatementError, StatementResult
from fraud_common.settings import ActionSettings, AlertSettings, SqlSettings, WarehouseSettings
from fraud_common.training import ModelStatus, not_worse, version_names
from moto import mock_aws

from tests.conftest import stubbed_client

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]

TOPIC = "arn:aws:sns:us-east-1:123456789012:card-fraud-fraud-alerts"
ALERTS = [
    {"transaction_id": 1, "customer_id": 17, "tx_amount": "512.30", "score": 0.97, "model_version": "m_v1"},
    {"transaction_id": 2, "customer_id": 23, "tx_amount": "250.00", "score": 0.91, "model_version": "m_v1"},
    {"transaction_id": 3, "customer_id": 31, "tx_amount": "300.10", "score": 0.88, "model_version": "m_v1"},
]


@pytest.fixture
def sns():
    with stubbed_client("sns") as client:
        yield client


def test_only_entries_sns_accepted_are_returned(sns) -> None:
    sns.stub.add_response(
        "publish_batch",
        {
            "Successful": [{"Id": "tx-1", "MessageId": "m-1"}, {"Id": "tx-3", "MessageId": "m-3"}],
            "Failed": [{"Id": "tx-2", "Code": "InternalError", "SenderFault": False, "Message": "try again"}],
        },
        {"TopicArn": TOPIC, "PublishBatchRequestEntries": ANY},
    )
    accepted, failed = publish_batch(sns, TOPIC, ALERTS)
    assert accepted == [(1, "m-1"), (3, "m-3")]
    assert failed == 1


def test_a_throttled_call_fails_every_entry(sns) -> None:
    sns.stub.add_client_error("publish_batch", service_error_code="Throttled", http_status_code=400)
    assert publish_batch(sns, TOPIC, ALERTS) == ([], 3)


def test_message_body_and_attributes(sns) -> None:
    captured = {}

    def capture(params, **kwargs):
        captured.update(json.loads(json.dumps(params)))

    sns.meta.events.register("provide-client-params.sns.PublishBatch", capture)
    sns.stub.add_response(
        "publish_batch",
        {"Successful": [], "Failed": []},
        {"TopicArn": TOPIC, "PublishBatchRequestEntries": ANY},
    )
    publish_batch(sns, TOPIC, ALERTS[:1])
    entry = captured["PublishBatchRequestEntries"][0]
    body = json.loads(entry["Message"])
    assert body["transaction_id"] == 1 and body["score"] == 0.97 and "published_at" in body
    assert entry["MessageAttributes"] == message_attributes(ALERTS[0])
    assert message_attributes(ALERTS[0])["amount"] == {"DataType": "Number", "StringValue": "512.30"}
    assert "terminal_id" not in message_attributes(ALERTS[0])  # absent columns are left out, not sent empty


@pytest.mark.parametrize(
    ("candidate", "current", "promote"),
    [
        (ModelStatus("READY", "f1", 0.80), None, True),
        (ModelStatus("READY", "f1", 0.80), {"validation_metric": 0.80}, True),
        (ModelStatus("READY", "f1", 0.79), {"validation_metric": 0.80}, False),
        (ModelStatus("READY", "rmse", 0.20), {"validation_metric": 0.25}, True),
        (ModelStatus("READY", "rmse", 0.30), {"validation_metric": 0.25}, False),
        (ModelStatus("READY"), {"validation_metric": 0.25}, False),
        (ModelStatus("READY"), {"validation_metric": None}, True),
    ],
)
def test_promotion_rule(candidate, current, promote) -> None:
    assert not_worse(candidate, current) is promote


def test_version_names_are_identifiers_with_a_timestamp() -> None:
    from datetime import UTC, datetime

    sql = SqlSettings("t", "l", "default", "b", "fraud_model", "fn_fraud_score", 5400, 10_000_000)
    assert version_names(sql, datetime(2026, 11, 29, 3, 4, 5, 678_901, tzinfo=UTC)) == (
        "fraud_model_v20261129030405678",
        "fn_fraud_score_v20261129030405678",
    )


def test_age_of_registry_timestamps() -> None:
    from datetime import UTC, datetime

    from fraud_common.training import _age_s

    now = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)
    assert _age_s("2026-11-29 02:59:30", now) == 30
    assert _age_s("2026-11-29 02:00:00.250000", now) == 3599.75
    assert _age_s(None, now) == float("inf")  # unknown age: no grace


# ------------------------------------------------------------------------------------ act_on_alert


@pytest.fixture
def dynamodb(monkeypatch):
    """moto in-process, with a table named "cases" for this test only."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.resource("dynamodb", region_name="us-east-1").meta.client
        if "cases" in client.list_tables()["TableNames"]:
            client.delete_table(TableName="cases")  # moto's backends outlive a mock_aws in this process
        client.create_table(
            TableName="cases",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _alert(tx: int, card: int) -> dict:
    return {"transaction_id": tx, "customer_id": card, "score": 0.9, "tx_amount": "10.00"}


def _items(client) -> dict[str, dict]:
    return {item["pk"]: item for item in client.scan(TableName="cases")["Items"]}


def test_a_batch_locks_each_card_once_per_alerted_transaction(dynamodb) -> None:
    batch = [_alert(1, 17), _alert(2, 17), _alert(1, 17), _alert(3, 23)]  # tx 1 delivered twice
    assert lock_cards(dynamodb, "cases", batch) == {1, 2, 3}
    items = _items(dynamodb)
    assert set(items) == {"CASE#1", "CASE#2", "CASE#3", "CARD#17", "CARD#23"}
    assert items["CARD#17"]["lock_count"] == 2 and items["CARD#17"]["transaction_ids"] == {"1", "2"}
    assert items["CARD#23"]["lock_count"] == 1 and items["CARD#23"]["locked"] is True


def test_a_redelivered_alert_changes_nothing_and_the_rest_of_its_batch_is_written(dynamodb) -> None:
    lock_cards(dynamodb, "cases", [_alert(1, 17)])
    before = _items(dynamodb)["CASE#1"]
    recorded = lock_cards(dynamodb, "cases", [_alert(4, 17), _alert(1, 17), _alert(5, 99)])
    assert recorded == {4, 5}
    items = _items(dynamodb)
    assert items["CASE#1"] == before
    assert items["CARD#17"]["lock_count"] == 2 and items["CARD#17"]["transaction_ids"] == {"1", "4"}
    assert lock_cards(dynamodb, "cases", [_alert(4, 17), _alert(5, 99)]) == set()
    assert _items(dynamodb)["CARD#17"]["lock_count"] == 2


def test_batches_beyond_one_transaction_are_split(dynamodb) -> None:
    batch = [_alert(tx, tx % 7) for tx in range(actions.ALERTS_PER_TRANSACTION * 2 + 3)]
    assert lock_cards(dynamodb, "cases", batch) == set(range(len(batch)))
    cards = {k: v for k, v in _items(dynamodb).items() if k.startswith("CARD#")}
    assert sum(int(card["lock_count"]) for card in cards.values()) == len(batch)


def test_a_failed_transaction_writes_nothing_and_returns_the_whole_batch(dynamodb) -> None:
    # A card whose lock_count is not a number: its Update fails, which cancels the whole transaction
    # for a reason other than an existing case.
    dynamodb.put_item(TableName="cases", Item={"pk": "CARD#23", "lock_count": "broken"})
    broken = _items(dynamodb)
    with pytest.raises(ClientError):
        lock_cards(dynamodb, "cases", [_alert(1, 17), _alert(2, 23)])
    assert _items(dynamodb) == broken
    handler = actions.make_handler(ActionSettings("cases"))
    records = [
        {"messageId": "m1", "body": json.dumps(_alert(1, 17))},
        {"messageId": "m2", "body": "not json"},
        {"messageId": "m3", "body": json.dumps(_alert(3, 23))},
    ]
    assert handler({"Records": records}, None) == {
        "batchItemFailures": [{"itemIdentifier": m} for m in ("m2", "m1", "m3")]
    }
    assert _items(dynamodb) == broken


# ------------------------------------------------------------------ score_and_alert: cycles and passes

SQL_SETTINGS = SqlSettings("t", "l", "default", "b", "fraud_model", "fn_fraud_score", 5400, 10_000_000)
WAREHOUSE = WarehouseSettings(database="dev", workgroup="card-fraud-wg", statement_timeout_s=10)


@pytest.fixture
def redshift_data():
    with stubbed_client("redshift-data") as client:
        yield client


def test_the_refreshed_view_is_the_streaming_view_the_scoring_reads() -> None:
    sql = REPO / "sql"
    streams = (sql / "migrations" / "001_streams.sql").read_text()
    view = re.search(r"REFRESH MATERIALIZED VIEW (\w+)", queries.load("refresh_transactions", {})).group(1)
    assert f"CREATE MATERIALIZED VIEW {view}\nAUTO REFRESH YES" in streams
    assert f"FROM {view} s" in (sql / "migrations" / "004_features.sql").read_text()


def test_a_failed_refresh_is_logged_and_the_cycle_goes_on(redshift_data, monkeypatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(alerts.logger, "warning", lambda message, **_: warnings.append(message))
    statement = "11111111-2222-3333-4444-555555555555"
    redshift_data.stub.add_response(
        "execute_statement",
        {"Id": statement},
        {
            "Sql": queries.load("refresh_transactions", {}),
            "StatementName": "query refresh_transactions",
            "Database": "dev",
            "WorkgroupName": "card-fraud-wg",
        },
    )
    redshift_data.stub.add_response(
        "describe_statement",
        {"Id": statement, "Status": "FAILED", "Error": "ERROR: cannot reach Kinesis stream"},
        {"Id": statement, "WaitTimeSeconds": ANY},
    )
    alerts.refresh_transactions(DataApi(WAREHOUSE, client=redshift_data))  # does not raise
    assert warnings == ["refresh of the transaction view failed; scoring what is ingested"]


def test_ended_is_one_describe_without_waiting_and_raises_when_the_statement_failed(redshift_data) -> None:
    api = DataApi(WAREHOUSE, client=redshift_data)
    for status, extra in (("STARTED", {}), ("FINISHED", {}), ("FAILED", {"Error": "ERROR: boom"})):
        redshift_data.stub.add_response(
            "describe_statement", {"Id": "s1", "Status": status, **extra}, {"Id": "s1"}
        )
    assert api.ended("s1", "UPDATE x") is False
    assert api.ended("s1", "UPDATE x") is True
    with pytest.raises(StatementError, match="boom"):
        api.ended("s1", "UPDATE x")


def test_marks_cover_what_sns_accepted_while_the_previous_mark_ran(redshift_data, monkeypatch) -> None:
    """25 pending alerts: the first batch's mark runs while batches 2 and 3 are published, then one mark
    takes their 15 alerts; publishing never waited for a mark, and no mark precedes its batch."""
    pending = [{"transaction_id": tx} for tx in range(100, 125)]
    events: list[str] = []

    def run_query(api, name, placeholders, parameters=None):
        assert name == "pending_alerts"
        return StatementResult("p", rows=pending)

    def publish(sns, topic, batch):
        events.append(f"publish {batch[0]['transaction_id']}")
        return [(a["transaction_id"], f"m-{a['transaction_id']}") for a in batch], 0

    monkeypatch.setattr(alerts.queries, "run", run_query)
    monkeypatch.setattr(alerts, "publish_batch", publish)
    mark_sql = alerts.queries.load("mark_alert_sent", SQL_SETTINGS.placeholders())
    stub = redshift_data.stub

    def mark(statement: str, ids: range) -> None:
        message_ids = json.dumps({str(tx): f"m-{tx}" for tx in ids})
        stub.add_response(
            "execute_statement",
            {"Id": statement},
            {
                "Sql": mark_sql,
                "Parameters": [{"name": "message_ids", "value": message_ids}],
                "StatementName": "query mark_alert_sent",
                "Database": "dev",
                "WorkgroupName": "card-fraud-wg",
            },
        )

    mark("mark-1", range(100, 110))
    stub.add_response("describe_statement", {"Id": "mark-1", "Status": "STARTED"}, {"Id": "mark-1"})
    stub.add_response("describe_statement", {"Id": "mark-1", "Status": "STARTED"}, {"Id": "mark-1"})
    stub.add_response(
        "describe_statement", {"Id": "mark-1", "Status": "FINISHED"}, {"Id": "mark-1", "WaitTimeSeconds": ANY}
    )
    mark("mark-2", range(110, 125))
    stub.add_response(
        "describe_statement", {"Id": "mark-2", "Status": "FINISHED"}, {"Id": "mark-2", "WaitTimeSeconds": ANY}
    )
    outbox = threading.Lock()
    api = DataApi(WAREHOUSE, client=redshift_data)
    seconds = iter(range(0, 100, 1))  # a second passes between batches: a mark may start after each
    assert alerts.publish_pending(
        api, None, TOPIC, SQL_SETTINGS, 500, outbox, clock=lambda: next(seconds)
    ) == (
        25,
        0,
    )
    assert events == ["publish 100", "publish 110", "publish 120"]
    assert outbox.acquire(blocking=False)  # released


def test_within_mark_every_s_batches_are_published_without_warehouse_calls(
    redshift_data, monkeypatch
) -> None:
    """The first batch is marked at once; the next ones, accepted within MARK_EVERY_S, cost no
    warehouse call until the pass ends with one wait and one mark for them."""
    monkeypatch.setattr(
        alerts.queries,
        "run",
        lambda *_a, **_k: StatementResult("p", rows=[{"transaction_id": t} for t in range(30)]),
    )
    monkeypatch.setattr(
        alerts, "publish_batch", lambda sns, topic, batch: ([(a["transaction_id"], "m") for a in batch], 0)
    )
    stub = redshift_data.stub
    for statement in ("mark-1", "mark-2"):
        stub.add_response(
            "execute_statement",
            {"Id": statement},
            {
                "Sql": ANY,
                "Parameters": ANY,
                "StatementName": ANY,
                "Database": "dev",
                "WorkgroupName": "card-fraud-wg",
            },
        )
        stub.add_response(
            "describe_statement",
            {"Id": statement, "Status": "FINISHED"},
            {"Id": statement, "WaitTimeSeconds": ANY},
        )
    api = DataApi(WAREHOUSE, client=redshift_data)
    assert alerts.publish_pending(api, None, TOPIC, SQL_SETTINGS, 500, clock=lambda: 0.0) == (30, 0)


def _cycles(monkeypatch, score_calls: list[float], pass_gate: threading.Event, cycles: int):
    """alerts.run with score and publish_pending replaced by recorders: each cycle scores 5 and
    enqueues 1; each publish pass publishes 1 once `pass_gate` is set. Cycle 2 starts once pass 1 runs."""
    passes: list[float] = []
    first_pass = threading.Event()

    def score(api, sql, threshold, outbox=None):
        if score_calls:
            assert first_pass.wait(10)
        score_calls.append(time.monotonic())
        return 5, 1, "m"

    def publish(api, sns, topic, sql, limit, outbox=None):
        passes.append(time.monotonic())
        first_pass.set()
        assert pass_gate.wait(10)
        return 1, 0

    monkeypatch.setattr(alerts, "score", score)
    monkeypatch.setattr(alerts, "publish_pending", publish)
    settings = AlertSettings(TOPIC, 0.5, poll_interval_s=0.0, batch_limit=500, stop_margin_s=0.5)
    left = iter(range(cycles - 1, -1, -1))
    return passes, lambda sleep: alerts.run(
        None, settings, SQL_SETTINGS, lambda: next(left) * 1000, sns=object(), sleep=sleep
    )


def test_cycles_go_on_scoring_while_a_slow_publish_pass_runs(monkeypatch) -> None:
    scored: list[float] = []
    gate = threading.Event()
    passes, run = _cycles(monkeypatch, scored, gate, cycles=4)

    def sleep(_s: float) -> None:
        if len(scored) == 3:  # cycles 2 and 3 ran while the first pass was held: let it finish
            gate.set()
            time.sleep(0.2)

    result = run(sleep)
    assert result.cycles == 4 and result.totals.scored == 20 and result.totals.enqueued == 4
    # pass 1 from cycle 1; cycles 2 and 3 asked while it ran: ONE pass 2, started as soon as pass 1
    # ended (before cycle 4, not after it); pass 3 from cycle 4
    assert len(passes) == 3 and passes[0] < scored[1] < scored[2] < passes[1] < scored[3] < passes[2]
    assert result.totals.published == 3


def test_a_failed_pass_fails_the_next_cycle_and_no_pass_runs_after_it(monkeypatch) -> None:
    scored: list[float] = []
    passes: list[float] = []

    def score(api, sql, threshold, outbox=None):
        scored.append(time.monotonic())
        return 5, 1, "m"

    def publish(api, sns, topic, sql, limit, outbox=None):
        passes.append(time.monotonic())
        raise RuntimeError("sns down")

    monkeypatch.setattr(alerts, "score", score)
    monkeypatch.setattr(alerts, "publish_pending", publish)
    settings = AlertSettings(TOPIC, 0.5, poll_interval_s=0.0, batch_limit=500, stop_margin_s=0.5)
    with pytest.raises(RuntimeError, match="sns down"):
        alerts.run(
            None, settings, SQL_SETTINGS, lambda: 60_000, sns=object(), sleep=lambda _s: time.sleep(0.05)
        )
    assert len(passes) == 1 and len(scored) >= 2  # the cycle after the failed pass raised its error


def test_a_failed_cycle_waits_for_the_running_pass_and_raises_its_own_error(monkeypatch) -> None:
    gate = threading.Event()
    passes: list[float] = []
    ended: list[float] = []

    def score(api, sql, threshold, outbox=None):
        if passes:
            raise RuntimeError("warehouse down")
        return 5, 1, "m"

    def publish(api, sns, topic, sql, limit, outbox=None):
        passes.append(time.monotonic())
        assert gate.wait(10)
        ended.append(time.monotonic())
        raise RuntimeError("sns down")

    monkeypatch.setattr(alerts, "score", score)
    monkeypatch.setattr(alerts, "publish_pending", publish)
    settings = AlertSettings(TOPIC, 0.5, poll_interval_s=0.0, batch_limit=500, stop_margin_s=0.5)
    threading.Timer(0.3, gate.set).start()
    with pytest.raises(RuntimeError, match="warehouse down"):
        alerts.run(
            None, settings, SQL_SETTINGS, lambda: 60_000, sns=object(), sleep=lambda _s: time.sleep(0.05)
        )
    assert len(passes) == 1 and len(ended) == 1  # waited for, and no pass after the failed cycle


def test_the_run_ends_with_a_pass_over_what_cycles_enqueued_during_a_running_pass(monkeypatch) -> None:
    scored: list[float] = []
    gate = threading.Event()
    passes, run = _cycles(monkeypatch, scored, gate, cycles=2)
    threading.Timer(0.3, gate.set).start()
    result = run(lambda _s: None)
    # cycle 2 enqueued while pass 1 was held: the run waits for pass 1, then publishes once more
    assert result.cycles == 2 and len(passes) == 2 and passes[1] > scored[1]
    assert result.totals.published == 2
