"""fraud_common.alerts and training: per-entry SNS failures (Stubber), message attributes, promotion rule."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fraud_common.alerts import message_attributes, publish_batch
from fraud_common.settings import SqlSettings
from fraud_common.training import ModelStatus, not_worse, version_names

pytestmark = pytest.mark.unit

TOPIC = "arn:aws:sns:us-east-1:123456789012:card-fraud-fraud-alerts"
ALERTS = [
    {"transaction_id": 1, "customer_id": 17, "tx_amount": "512.30", "score": 0.97, "model_version": "m_v1"},
    {"transaction_id": 2, "customer_id": 23, "tx_amount": "250.00", "score": 0.91, "model_version": "m_v1"},
    {"transaction_id": 3, "customer_id": 31, "tx_amount": "300.10", "score": 0.88, "model_version": "m_v1"},
]


@pytest.fixture
def sns():
    client = boto3.client("sns", region_name="us-east-1")
    with Stubber(client) as stub:
        client.stub = stub
        yield client
        stub.assert_no_pending_responses()


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
