"""Stand-in for EventBridge and the SQS event source mapping: invokes the handlers in-process.

- Every function with a schedule in template.yaml is invoked on that schedule, with the event from
  `events/` (or the schedule's Input); one invocation at a time per function, as reserved
  concurrency 1 gives on AWS. Functions named in `back_to_back` are invoked again as soon as the
  previous invocation returns: score_and_alert cycles until 10 s before its 60 s timeout, so on its
  one-minute schedule nothing scores for ~10 s of every minute, which locally would be most of the
  alert latency's tail.
- Every function with an SQS event source gets the queue's messages as an SQS event batch (the
  Lambda event shape) from `queue_pollers` concurrent pollers (Lambda's event source mapping runs
  several batches at once); messages are deleted only when the invocation succeeds, and with
  ReportBatchItemFailures only the failed ones stay, so retries and the DLQ redrive work as on AWS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from local.bootstrap import FunctionSpec, Resources
from local.lambdas import invoke
from local.template import ACCOUNT, REPO

log = logging.getLogger(__name__)
RECEIVE_WAIT_S = 1  # each SQS poller's long poll: a stop or a queue change takes effect within it
EVENTS = REPO / "events"


def event_file(spec: FunctionSpec, prefer: tuple[str, ...] = ()) -> Path | None:
    """The events/ file for a function: named after its code folder, the preferred kind first."""
    candidates = sorted(EVENTS.glob(f"{spec.dir_name}*.json"))
    for word in prefer:
        for path in candidates:
            if word in path.stem:
                return path
    return candidates[0] if candidates else None


def scheduled_event(spec: FunctionSpec, schedule_input: dict[str, Any] | None) -> dict[str, Any]:
    if schedule_input is not None:
        return schedule_input
    path = event_file(spec, ("schedule", "tick"))
    if path is not None:
        return json.loads(path.read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {  # EventBridge's scheduled event
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": now,
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0
    last_error: str = ""
    messages: int = 0  # SQS messages delivered
    messages_deleted: int = 0


@dataclass
class Scheduler:
    resources: Resources
    region: str = "us-east-1"
    run_now: tuple[str, ...] = ()  # function dir names invoked at start rather than after one period
    only: tuple[str, ...] | None = None  # restrict to these function dir names
    on_sqs_batch: Callable[[FunctionSpec, list[dict[str, Any]]], None] | None = None
    back_to_back: tuple[str, ...] = ()  # scheduled function dir names re-invoked as soon as they return
    queue_pollers: int | None = None  # concurrent batches per SQS-triggered function (default: the spec's)
    stats: dict[str, FunctionStats] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stats_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for spec in self.resources.functions.values():
            if self.only is not None and spec.dir_name not in self.only:
                continue
            self.stats[spec.dir_name] = FunctionStats()
            for schedule in spec.schedules:
                self._spawn(self._schedule_loop, spec, schedule.period_s, schedule.event)
            if spec.queue_arn:
                for _ in range(self.queue_pollers or spec.queue_concurrency):
                    self._spawn(self._queue_loop, spec)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"scheduler-{args[0].dir_name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every loop to end (handlers see zero remaining time) and wait for them."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def invoke(self, spec: FunctionSpec, event: dict[str, Any]) -> Any:
        stats = self.stats.setdefault(spec.dir_name, FunctionStats())
        with self._stats_lock:
            stats.invocations += 1
        try:
            return invoke(spec, event, region=self.region, stop=self.stop_event)
        except Exception as exc:  # a failed invocation is logged and retried by the schedule, as on AWS
            with self._stats_lock:
                stats.errors += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed: %s", spec.name, stats.last_error)
            raise

    def _schedule_loop(
        self, spec: FunctionSpec, period_s: float, schedule_input: dict[str, Any] | None
    ) -> None:
        next_run = time.monotonic() + (0.0 if spec.dir_name in self.run_now else period_s)
        while not self.stop_event.wait(max(0.0, next_run - time.monotonic())):
            next_run += period_s
            try:
                self.invoke(spec, scheduled_event(spec, schedule_input))
            except Exception:
                pass  # counted in stats; the next tick runs again (a failing one not back to back)
            else:
                if spec.dir_name in self.back_to_back:
                    next_run = time.monotonic()
            next_run = max(next_run, time.monotonic())

    def _queue_loop(self, spec: FunctionSpec) -> None:
        sqs = boto3.client("sqs", region_name=self.region)
        queue_url = self.resources.queue_url_for_arn(spec.queue_arn or "")
        while not self.stop_event.is_set():
            try:
                response = sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(spec.batch_size, 10),
                    WaitTimeSeconds=RECEIVE_WAIT_S,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["All"],
                )
            except Exception as exc:  # the stack is shutting down or moto hiccupped: try again
                if not self.stop_event.wait(0.5):
                    log.warning("receive from %s failed: %s", queue_url, exc)
                continue
            messages = response.get("Messages") or []
            if messages:
                self._deliver(sqs, spec, queue_url, messages)

    def _deliver(self, sqs: Any, spec: FunctionSpec, queue_url: str, messages: list[dict[str, Any]]) -> None:
        stats = self.stats[spec.dir_name]
        with self._stats_lock:
            stats.messages += len(messages)
        records = [sqs_record(m, spec.queue_arn or "", self.region) for m in messages]
        if self.on_sqs_batch is not None:
            self.on_sqs_batch(spec, records)
        try:
            result = self.invoke(spec, {"Records": records})
        except Exception:
            return  # nothing deleted: the messages come back after the visibility timeout
        failed = set()
        if spec.report_batch_item_failures and isinstance(result, dict):
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        with self._stats_lock:
            stats.messages_deleted += len(done)


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message in the shape Lambda's event source mapping delivers it."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    for value in attributes.values():
        if value["binaryValue"] is None:
            del value["binaryValue"]
        if value["stringValue"] is None:
            del value["stringValue"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes") or {},
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
