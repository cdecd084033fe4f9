"""act_on_alert: the operational action for each alert from the SQS queue (subscribed to the topic).

Per alert: a case item (`CASE#<transaction id>`) and a lock on the card (`CARD#<customer id>`),
written in one DynamoDB transaction. Delivery is at-least-once, so the action is idempotent per
transaction id twice over: Powertools idempotency (DynamoDB persistence) short-circuits a repeated
alert, and the case is written only if absent, so even a lapsed idempotency record locks once.
Failed records are reported as partial batch failures: only they return to the queue (then the DLQ).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from botocore.exceptions import ClientError

from fraud_common.settings import ActionSettings

logger = Logger(child=True)


class BadAlert(ValueError):
    """The message is not an alert this function can act on (it goes back to the queue, then the DLQ)."""


def parse_alert(body: str) -> dict[str, Any]:
    """The alert from an SQS body: raw SNS delivery (the alert JSON) or the SNS envelope around it."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
            message = json.loads(message["Message"])
    except (TypeError, ValueError) as exc:
        raise BadAlert(f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise BadAlert("message body is not a JSON object")
    for key in ("transaction_id", "customer_id"):
        try:
            message[key] = int(message[key])
        except (KeyError, TypeError, ValueError):
            raise BadAlert(f"alert has no integer {key}") from None
    return message


def lock_card(table: Any, alert: Mapping[str, Any], now: datetime | None = None) -> bool:
    """Record the case and lock the card; False when the case already existed (nothing changed)."""
    at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    tx, card = str(alert["transaction_id"]), str(alert["customer_id"])
    client = table.meta.client
    try:
        client.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table.name,
                        "Item": {
                            "pk": f"CASE#{tx}",
                            "transaction_id": tx,
                            "customer_id": card,
                            "score": str(alert.get("score", "")),
                            "amount": str(alert.get("tx_amount", alert.get("amount", ""))),
                            "model_version": str(alert.get("model_version", "")),
                            "reasons": str(alert.get("reasons", "")),
                            "status": "open",
                            "opened_at": at,
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": table.name,
                        "Key": {"pk": f"CARD#{card}"},
                        "UpdateExpression": "SET locked = :yes, locked_at = if_not_exists(locked_at, :at), "
                        "last_alert_at = :at ADD lock_count :one, transaction_ids :tx",
                        "ExpressionAttributeValues": {":yes": True, ":at": at, ":one": 1, ":tx": {tx}},
                    }
                },
            ]
        )
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons") or []
        if exc.response["Error"]["Code"] == "TransactionCanceledException" and any(
            r.get("Code") == "ConditionalCheckFailed" for r in reasons[:1]
        ):
            logger.info("case already recorded; nothing to do", extra={"transaction_id": tx})
            return False
        raise
    logger.info("card locked", extra={"transaction_id": tx, "customer_id": card})
    return True


def make_handler(settings: ActionSettings, lambda_context: Any | None = None) -> Callable[[dict, Any], dict]:
    """Build the batch handler once per cold start (tables and idempotency store are reused)."""
    table = boto3.resource("dynamodb").Table(settings.cases_table)
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
    config = IdempotencyConfig(
        event_key_jmespath="transaction_id", expires_after_seconds=settings.idempotency_ttl_s
    )

    @idempotent_function(data_keyword_argument="alert", persistence_store=persistence, config=config)
    def act(alert: dict[str, Any]) -> dict[str, Any]:
        return {"transaction_id": alert["transaction_id"], "locked": lock_card(table, alert)}

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        return act(alert=parse_alert(record.body))

    def handle(event: dict, context: Any) -> dict:
        config.register_lambda_context(context)
        processor = BatchProcessor(event_type=EventType.SQS)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handle
