"""act_on_alert: the operational action for each alert from the SQS queue (subscribed to the topic).

Per alert: a case item (`CASE#<transaction id>`) and a lock on the card (`CARD#<customer id>`),
written for a whole SQS batch in one DynamoDB transaction. Delivery is at-least-once, so the action is
idempotent per transaction id: the case is written only if absent, and a transaction that would
write an existing case writes nothing, so a card is locked once per alerted transaction however
often the alert comes. (Powertools idempotency did the same with two more DynamoDB calls per alert,
which capped the local stack at about 10 alerts/s.)
Messages that are not alerts are reported as partial batch failures: only they return to the queue
(then the DLQ); a failed transaction returns its alerts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

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


TRANSACT_WRITE_ITEMS_LIMIT = 100  # DynamoDB's limit per TransactWriteItems
# An alert needs at most 2 items (its case and its card's update).
ALERTS_PER_TRANSACTION = TRANSACT_WRITE_ITEMS_LIMIT // 2


def lock_cards(
    client: Any,
    cases_table: str,
    alerts: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> set[int]:
    """Record the cases and lock the cards of a batch of alerts; returns the transaction ids newly
    recorded (an alert whose case already exists changes nothing).

    One TransactWriteItems per ALERTS_PER_TRANSACTION alerts: a conditional Put of each case and one
    Update per card adding all its alerts. If a case
    exists already (a redelivery, or another poller got there first), DynamoDB cancels the whole
    transaction and names that case; it is dropped and the rest written again. Any other failure
    propagates: nothing of that transaction was written, and the batch is retried."""
    moment = now or datetime.now(UTC)
    at = moment.isoformat(timespec="milliseconds")
    unique: dict[int, Mapping[str, Any]] = {}
    for alert in alerts:  # the same alert twice in a batch: the first is acted on, the rest are no-ops
        unique.setdefault(int(alert["transaction_id"]), alert)
    ordered = list(unique.values())
    recorded: set[int] = set()
    for start in range(0, len(ordered), ALERTS_PER_TRANSACTION):
        pending = {int(a["transaction_id"]): a for a in ordered[start : start + ALERTS_PER_TRANSACTION]}
        while pending:
            items, case_index = _transaction_items(cases_table, pending, at)
            try:
                client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                existing = _existing_cases(exc, case_index)
                if not existing:
                    raise
                logger.info(
                    "cases already recorded; nothing to do for them", extra={"transactions": existing}
                )
                for tx in existing:
                    del pending[tx]
                continue
            recorded |= set(pending)
            logger.info("cards locked", extra={"transactions": sorted(pending)})
            break
    return recorded


def _transaction_items(
    cases_table: str, alerts: Mapping[int, Mapping[str, Any]], at: str
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The TransactItems for these alerts, and item index -> transaction id of each case Put."""
    items: list[dict[str, Any]] = []
    case_index: dict[int, int] = {}
    by_card: dict[str, list[str]] = {}
    for tx_id, alert in alerts.items():
        tx, card = str(tx_id), str(alert["customer_id"])
        case_index[len(items)] = tx_id
        items.append(
            {
                "Put": {
                    "TableName": cases_table,
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
            }
        )
        by_card.setdefault(card, []).append(tx)
    for card, txs in by_card.items():  # one Update per card: a transaction may touch an item once
        items.append(
            {
                "Update": {
                    "TableName": cases_table,
                    "Key": {"pk": f"CARD#{card}"},
                    "UpdateExpression": "SET locked = :yes, locked_at = if_not_exists(locked_at, :at), "
                    "last_alert_at = :at ADD lock_count :n, transaction_ids :txs",
                    "ExpressionAttributeValues": {":yes": True, ":at": at, ":n": len(txs), ":txs": set(txs)},
                }
            }
        )
    return items, case_index


def _existing_cases(exc: ClientError, case_index: Mapping[int, int]) -> list[int]:
    """The transaction ids whose case Put failed its condition, if that is why the transaction was
    cancelled; empty for any other error."""
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return []
    reasons = exc.response.get("CancellationReasons") or []
    return [
        case_index[i]
        for i, reason in enumerate(reasons)
        if i in case_index and reason.get("Code") == "ConditionalCheckFailed"
    ]


def make_handler(settings: ActionSettings) -> Callable[[dict, Any], dict]:
    """Build the batch handler once per cold start (the client is reused)."""
    client = boto3.resource("dynamodb").meta.client  # plain Python values, typed by boto3's serializer

    def handle(event: dict, context: Any) -> dict:
        failures, alerts, message_ids = [], [], []
        for record in event.get("Records") or []:
            try:
                alerts.append(parse_alert(record.get("body")))
                message_ids.append(record["messageId"])
            except BadAlert as exc:  # back to the queue, then the DLQ; the rest of the batch goes on
                logger.warning(
                    "not an alert", extra={"message_id": record.get("messageId"), "error": str(exc)}
                )
                failures.append(record["messageId"])
        if alerts:
            try:
                lock_cards(client, settings.cases_table, alerts)
            except (ClientError, BotoCoreError) as exc:  # nothing written: the whole batch is retried
                logger.warning(
                    "alerts not acted on; retried", extra={"count": len(alerts), "error": str(exc)}
                )
                failures += message_ids
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}

    return handle
