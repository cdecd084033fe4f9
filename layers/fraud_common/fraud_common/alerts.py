"""score_and_alert: score new stream transactions, fill the outbox, publish pending alerts to SNS.

An alert leaves the outbox (`mark_alert_sent`) only after SNS accepted it, so failed publishes
(throttling, per-entry failures, a crash) are retried by a later cycle: delivery is at-least-once and
`act_on_alert` is idempotent per transaction id.

Scoring and publishing overlap: while a cycle refreshes and scores, a second thread publishes what
earlier cycles enqueued (one publish pass at a time, so an alert is never read as pending by two
passes; scoring does not wait for a slow pass). The outbox's writes (enqueue, mark sent) never run at the same time: on Redshift
two concurrent transactions that read and write one table can fail with a serializable isolation error.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from fraud_common import queries
from fraud_common.dataapi import DataApi, DataApiError
from fraud_common.settings import IDENTIFIER, AlertSettings, SqlSettings

logger = Logger(child=True)
SNS_BATCH = 10  # PublishBatch accepts at most 10 entries
MARK_EVERY_S = 0.5  # while a pass publishes, a mark_alert_sent starts at most this often
MARK_LIMIT = 100  # alerts per mark_alert_sent: its JSON parameter stays far below Redshift's 64 KB varchar
# Message attributes for subscription filter policies: attribute -> (outbox column(s), SNS data type).
ATTRIBUTES = {
    "score": (("score",), "Number"),
    "amount": (("tx_amount", "amount"), "Number"),
    "customer_id": (("customer_id",), "Number"),
    "terminal_id": (("terminal_id",), "Number"),
    "transaction_id": (("transaction_id",), "Number"),
    "model_version": (("model_version",), "String"),
}


@dataclass
class CycleResult:
    scored: int = 0
    enqueued: int = 0
    published: int = 0
    failed: int = 0
    model: str | None = None


@dataclass
class RunResult:
    cycles: int = 0
    totals: CycleResult = field(default_factory=CycleResult)


def current_model(api: DataApi, sql: SqlSettings) -> dict[str, Any] | None:
    """The promoted model (name, function), or None before the first promotion."""
    rows = queries.run(api, "current_model", sql.placeholders()).rows
    if not rows:
        return None
    model = rows[0]
    for key in ("model_name", "function_name"):
        if not IDENTIFIER.match(str(model.get(key) or "")):
            raise ValueError(f"current_model returned an invalid {key}: {model.get(key)!r}")
    return model


def refresh_transactions(api: DataApi) -> None:
    """Bring the transaction view up to date. A failed refresh is logged, not raised: the cycle still
    scores what AUTO REFRESH ingested and publishes the outbox."""
    try:
        queries.run(api, "refresh_transactions", {})
    except DataApiError as exc:
        logger.warning(
            "refresh of the transaction view failed; scoring what is ingested", extra={"error": str(exc)}
        )


def score(
    api: DataApi, sql: SqlSettings, threshold: float, outbox: threading.Lock | None = None
) -> tuple[int, int, str | None]:
    """Refresh the transaction view, score its new transactions with the promoted model and enqueue
    alerts (holding `outbox`, see the module's docstring); (scored, enqueued, model)."""
    model = current_model(api, sql)
    if model is None:
        logger.warning("no promoted model yet: scoring skipped, pending alerts still published")
        return 0, 0, None
    refresh_transactions(api)
    placeholders = {
        **sql.placeholders(),
        "MODEL_NAME": model["model_name"],
        "MODEL_FUNCTION": model["function_name"],
    }
    scored = queries.run(api, "score_new_transactions", placeholders, {"threshold": threshold}).rows_affected
    with outbox or nullcontext():
        enqueued = queries.run(api, "enqueue_alerts", placeholders, {"threshold": threshold}).rows_affected
    return max(scored, 0), max(enqueued, 0), model["model_name"]


def publish_pending(
    api: DataApi,
    sns: Any,
    topic_arn: str,
    sql: SqlSettings,
    limit: int,
    outbox: threading.Lock | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, int]:
    """Publish the outbox's pending alerts in batches of ten; (published, failed).

    What SNS accepted is marked sent by mark_alert_sent statements that run while the next batches are
    published: right after the first batch, then at most every MARK_EVERY_S when no mark is running,
    each for every alert accepted since the last one (publishing never waits for the warehouse, and
    costs one call per batch in between). A mark never precedes its alerts' acceptance, and a crash
    re-publishes only the alerts accepted since the last finished mark. `outbox` is held while a
    mark runs."""
    outbox = outbox or threading.Lock()
    pending = queries.run(api, "pending_alerts", sql.placeholders(), {"limit": limit}).rows
    mark_sql = queries.load("mark_alert_sent", sql.placeholders())
    published = failed = 0
    unmarked: list[tuple[Any, str]] = []  # accepted by SNS, not in a mark yet
    marking: str | None = None  # the running mark_alert_sent (outbox held)
    marked_at = -math.inf  # when the last mark started
    try:
        for start in range(0, len(pending), SNS_BATCH):
            accepted, rejected = publish_batch(sns, topic_arn, pending[start : start + SNS_BATCH])
            published += len(accepted)
            failed += rejected
            unmarked += accepted
            if clock() - marked_at < MARK_EVERY_S:
                continue
            if marking is not None and api.ended(marking, mark_sql):
                marking = None
                outbox.release()
            if marking is None and unmarked and outbox.acquire(blocking=False):  # else: enqueue is running
                marking, unmarked = _submit_mark(api, mark_sql, unmarked, outbox), unmarked[MARK_LIMIT:]
                marked_at = clock()
        if marking is not None:
            api.wait(marking, mark_sql)
            marking = None
            outbox.release()
        while unmarked:
            outbox.acquire()
            marking, unmarked = _submit_mark(api, mark_sql, unmarked, outbox), unmarked[MARK_LIMIT:]
            api.wait(marking, mark_sql)
            marking = None
            outbox.release()
    finally:
        if marking is not None:
            outbox.release()
    return published, failed


def _submit_mark(
    api: DataApi, mark_sql: str, accepted: Sequence[tuple[Any, str]], outbox: threading.Lock
) -> str:
    """Start mark_alert_sent for the first MARK_LIMIT accepted alerts; `outbox` (held by the caller) is
    released if the statement could not be submitted."""
    try:
        return api.submit(mark_sql, mark_sent_parameters(accepted[:MARK_LIMIT]), name="query mark_alert_sent")
    except BaseException:
        outbox.release()
        raise


def mark_sent_parameters(accepted: Sequence[tuple[Any, str]]) -> dict[str, str]:
    """mark_alert_sent's parameter: the SNS-accepted alerts, transaction id -> message id, as JSON (one
    statement takes a whole batch out of the outbox)."""
    return {"message_ids": json.dumps({str(tx): message_id for tx, message_id in accepted})}


def publish_batch(
    sns: Any, topic_arn: str, alerts: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[Any, str]], int]:
    """One PublishBatch call. Returns the (transaction_id, message_id) SNS accepted and the failure count;
    a failed call (throttling, network) counts every entry as failed and leaves them pending."""
    published_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    by_id = {f"tx-{alert['transaction_id']}": alert for alert in alerts}
    entries = [
        {
            "Id": entry_id,
            "Message": json.dumps({**alert, "published_at": published_at}, default=_json_default),
            "MessageAttributes": message_attributes(alert),
        }
        for entry_id, alert in by_id.items()
    ]
    try:
        response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "SNS PublishBatch failed; alerts stay pending", extra={"error": str(exc), "count": len(entries)}
        )
        return [], len(entries)
    for failure in response.get("Failed", []):
        logger.warning(
            "SNS rejected an alert; it stays pending",
            extra={"entry": failure.get("Id"), "code": failure.get("Code"), "reason": failure.get("Message")},
        )
    accepted = [(by_id[ok["Id"]]["transaction_id"], ok["MessageId"]) for ok in response.get("Successful", [])]
    return accepted, len(response.get("Failed", []))


def message_attributes(alert: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    attributes = {}
    for attribute, (columns, data_type) in ATTRIBUTES.items():
        value = next((alert[c] for c in columns if alert.get(c) is not None), None)
        if value is not None:
            attributes[attribute] = {"DataType": data_type, "StringValue": str(value)}
    return attributes


def run(
    api: DataApi,
    alert: AlertSettings,
    sql: SqlSettings,
    remaining_ms: Callable[[], int],
    sns: Any | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Cycle every poll interval until the next cycle could run into the Lambda's timeout. After each
    cycle's scoring, a publish pass is asked of a second thread (see Publisher: the next cycle scores
    meanwhile, so slow publishing never holds scoring up); the run returns after a last pass over what
    the cycles enqueued."""
    sns = sns or boto3.client("sns")
    result = RunResult()
    outbox = threading.Lock()
    publisher = Publisher(lambda: publish_pending(api, sns, alert.topic_arn, sql, alert.batch_limit, outbox))
    try:
        while True:
            cycle = CycleResult()
            cycle.scored, cycle.enqueued, cycle.model = score(api, sql, alert.threshold, outbox)
            publisher.request()
            cycle.published, cycle.failed = publisher.take()  # raises what a pass raised
            _add(result, cycle)
            logger.info("cycle done", extra={"cycle": result.cycles, **cycle.__dict__})
            if remaining_ms() / 1000 - alert.poll_interval_s < alert.stop_margin_s:
                break
            sleep(alert.poll_interval_s)
    except BaseException:
        publisher.stop()  # the running pass ends; the cycle's error is the one raised
        raise
    last = CycleResult()
    last.published, last.failed = publisher.close()
    _add(result, last, count=False)
    return result


class Publisher:
    """Runs publish passes in its own thread, one at a time (so no alert is read as pending by two
    passes). A pass requested while one runs starts as soon as that one ends (requests made meanwhile
    become that one pass), not at the next cycle: alerts enqueued during a pass wait for it, not for
    another scoring cycle too."""

    def __init__(self, publish: Callable[[], tuple[int, int]]) -> None:
        self._publish = publish
        self._wake = threading.Condition()
        self._requested = self._closing = False
        self._published = self._failed = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="publish-alerts", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a pass that reads the outbox after this call."""
        with self._wake:
            self._requested = True
            self._wake.notify()

    def take(self) -> tuple[int, int]:
        """(published, failed) by the passes that ended since the last take; raises what a pass raised
        (the thread stops at a failed pass)."""
        with self._wake:
            if self._error is not None:
                raise self._error
            counts = (self._published, self._failed)
            self._published = self._failed = 0
            return counts

    def close(self) -> tuple[int, int]:
        """Wait for the running pass and the one requested after it (if any); then take()."""
        self._end(last_pass=True)
        return self.take()

    def stop(self) -> None:
        """Wait for the running pass only."""
        self._end(last_pass=False)

    def _end(self, last_pass: bool) -> None:
        with self._wake:
            self._closing = True
            self._requested = self._requested and last_pass
            self._wake.notify()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._requested or self._closing):
                    self._wake.wait()
                if not self._requested:
                    return
                self._requested = False
            try:
                published, failed = self._publish()
            except BaseException as exc:
                with self._wake:
                    self._error = exc
                return
            with self._wake:
                self._published += published
                self._failed += failed


def _add(result: RunResult, cycle: CycleResult, count: bool = True) -> None:
    result.cycles += count
    totals = result.totals
    totals.scored += cycle.scored
    totals.enqueued += cycle.enqueued
    totals.published += cycle.published
    totals.failed += cycle.failed
    totals.model = cycle.model or totals.model


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
