"""Batched Kinesis writer with per-record retries, and a steady rate limiter.

    writer = KinesisWriter("cust-payment-txn-stream")      # checks the stream exists
    writer.put(b'{"TRANSACTION_ID": 1}', partition_key="42")  # buffered; sent in PutRecords batches
    writer.flush()                                         # sends everything buffered, with retries
    writer.stats                                           # sent / failed / retried / calls / ...
    writer.given_up                                        # records that exhausted their retries

The client comes from boto3's standard configuration (region, credentials, and endpoint via
`AWS_ENDPOINT_URL_KINESIS`); no code path knows whether it talks to AWS or to a local server.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024  # data + partition key
MAX_PARTITION_KEY_CHARS = 256

# Call-level errors worth retrying: the whole batch is sent again after a backoff.
RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)
# The endpoint went away (e.g. a local stack restarting) after botocore's own retries: back off, retry.
CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


class ProducerError(Exception):
    """A user-facing error of the producer (bad stream, bad record, bad settings)."""


class StreamNotFoundError(ProducerError):
    pass


class RecordTooLargeError(ProducerError):
    pass


@dataclass
class WriterStats:
    """Counts of one writer. Every record put ends up in exactly one of sent / failed."""

    sent: int = 0
    failed: int = 0  # given up on after max_attempts (kept in KinesisWriter.given_up)
    retried: int = 0  # record re-sends (a record retried twice counts 2)
    throttled: int = 0  # record or call failures due to throttling
    calls: int = 0  # PutRecords calls made
    bytes_sent: int = 0


@dataclass
class FailedRecord:
    data: bytes
    partition_key: str
    error_code: str
    error_message: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "partition_key": self.partition_key,
                "data": self.data.decode("utf-8", errors="replace"),
                "error_code": self.error_code,
                "error_message": self.error_message,
            }
        )


@dataclass
class _Pending:
    entry: dict[str, Any]
    size: int
    attempts: int = 0
    last_error: tuple[str, str] = ("", "")
    done: bool = False  # sent or given up on


class KinesisWriter:
    """Buffers records and sends them with PutRecords within the API limits, from a sender thread.

    - a batch holds at most 500 records and 5 MB (data + partition keys); a record at most 1 MB;
    - records rejected inside a batch (ErrorCode: throttling, internal failure) and whole calls
      failing with a retryable error are re-sent after an exponential backoff with full jitter,
      up to `max_attempts` sends per record; then the record is given up on (counted in
      `stats.failed`, kept in `given_up`);
    - `put` only buffers: a full batch, or one whose oldest record waited `linger_s`, goes to the
      sender thread, so producing never waits on the network (up to `max_batches_in_flight` queued
      batches; beyond that `put` blocks, which is the backpressure);
    - `flush()` sends everything and waits for it. A non-retryable error (stream deleted, access
      denied) stops the sender; `put`/`flush` then raise it, and the records not sent stay in the
      writer until `abandon()` moves them to `given_up`: nothing is dropped silently.
    `put`/`flush` may be called from several threads. `close()` flushes and stops the thread.
    """

    def __init__(
        self,
        stream_name: str,
        client: Any | None = None,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 0.05,
        max_delay_s: float = 5.0,
        linger_s: float = 0.1,  # the KPL's default RecordMaxBufferedTime (100 ms)
        max_batch_records: int = MAX_RECORDS_PER_CALL,
        max_batch_bytes: int = MAX_BYTES_PER_CALL,
        max_batches_in_flight: int = 4,
        check_stream: bool = True,
        sleep: Callable[[float], Any] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= max_batch_records <= MAX_RECORDS_PER_CALL:
            raise ValueError(f"max_batch_records must be in 1..{MAX_RECORDS_PER_CALL}")
        if not 1 <= max_batch_bytes <= MAX_BYTES_PER_CALL:
            raise ValueError(f"max_batch_bytes must be in 1..{MAX_BYTES_PER_CALL}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.stream_name = stream_name
        self.client = client if client is not None else boto3.client("kinesis")
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.linger_s = linger_s
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.stats = WriterStats()
        self.given_up: list[FailedRecord] = []
        self.error: BaseException | None = None  # the non-retryable error that stopped the sender
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._buffer: list[_Pending] = []
        self._buffer_bytes = 0
        self._oldest = 0.0
        self._unsent: list[_Pending] = []  # handed to the sender but not sent because of `error`
        self._lock = threading.RLock()
        if check_stream:
            self.check_stream()
        self._batches: queue.Queue[list[_Pending] | None] = queue.Queue(maxsize=max_batches_in_flight)
        self._sender = threading.Thread(target=self._send_loop, name=f"kinesis-{stream_name}", daemon=True)
        self._sender.start()

    def check_stream(self) -> None:
        """Raise StreamNotFoundError unless the stream exists (other errors propagate)."""
        try:
            self.client.describe_stream_summary(StreamName=self.stream_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise StreamNotFoundError(f"Kinesis stream '{self.stream_name}' not found") from exc
            raise

    @property
    def buffered(self) -> int:
        """Records accepted by `put` and not yet handed to the sender."""
        return len(self._buffer)

    def put(self, data: bytes | str, partition_key: str) -> None:
        """Accept one record (validated here); it is sent in a later batch."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not 1 <= len(partition_key) <= MAX_PARTITION_KEY_CHARS:
            raise ProducerError(f"partition key must have 1..{MAX_PARTITION_KEY_CHARS} characters")
        size = len(data) + len(partition_key.encode("utf-8"))
        if size > MAX_BYTES_PER_RECORD:
            raise RecordTooLargeError(f"record of {size} bytes exceeds the {MAX_BYTES_PER_RECORD}-byte limit")
        with self._lock:
            self._raise_if_broken()
            if self._buffer and (
                len(self._buffer) >= self.max_batch_records
                or self._buffer_bytes + size > self.max_batch_bytes
            ):
                self._hand_off()
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(_Pending({"Data": data, "PartitionKey": partition_key}, size))
            self._buffer_bytes += size
            if (
                len(self._buffer) >= self.max_batch_records
                or time.monotonic() - self._oldest >= self.linger_s
            ):
                self._hand_off()

    def flush_if_due(self) -> None:
        """Hand the buffer to the sender if its oldest record has waited `linger_s`."""
        with self._lock:
            if self._buffer and time.monotonic() - self._oldest >= self.linger_s:
                self._hand_off()

    def flush(self) -> None:
        """Send everything accepted so far and wait until it is sent or given up on."""
        with self._lock:
            if self._buffer and self.error is None:
                self._hand_off()
        self._batches.join()
        self._raise_if_broken()

    def close(self) -> None:
        """Flush, then stop the sender thread."""
        try:
            self.flush()
        finally:
            self._batches.put(None)
            self._sender.join()

    def __enter__(self) -> KinesisWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def abandon(self, error_code: str) -> int:
        """Give up on every record not sent yet (after an error or at exit); returns how many."""
        with self._lock:
            records = self._unsent + self._buffer
            for record in records:
                self.stats.failed += 1
                self.given_up.append(
                    FailedRecord(
                        record.entry["Data"], record.entry["PartitionKey"], error_code, str(self.error or "")
                    )
                )
            self._unsent, self._buffer, self._buffer_bytes = [], [], 0
            return len(records)

    def _raise_if_broken(self) -> None:
        if self.error is not None:
            raise self.error

    def _hand_off(self) -> None:
        batch, self._buffer, self._buffer_bytes = self._buffer, [], 0
        self._batches.put(batch)

    def _send_loop(self) -> None:
        while True:
            batch = self._batches.get()
            try:
                if batch is None:
                    return
                if self.error is not None:
                    self._unsent += batch
                    continue
                try:
                    self._send_with_retries(batch)
                except Exception as exc:
                    self.error = exc
                    self._unsent += [record for record in batch if not record.done]
            finally:
                self._batches.task_done()

    def _send_with_retries(self, batch: list[_Pending]) -> None:
        pending = batch
        while pending:
            retry: list[_Pending] = []
            for record in pending:
                record.attempts += 1
            try:
                response = self.client.put_records(
                    StreamName=self.stream_name, Records=[record.entry for record in pending]
                )
            except (ClientError, *CONNECTION_ERRORS) as exc:
                if isinstance(exc, ClientError):
                    code = exc.response.get("Error", {}).get("Code", "")
                    message = exc.response.get("Error", {}).get("Message", "")
                else:
                    code, message = type(exc).__name__, str(exc)
                if code not in RETRYABLE_CALL_ERRORS and not isinstance(exc, CONNECTION_ERRORS):
                    for record in pending:
                        record.attempts -= 1
                    raise
                self.stats.calls += 1
                if "Throttl" in code or "Exceeded" in code:
                    self.stats.throttled += 1
                for record in pending:
                    record.last_error = (code, message)
                retry = pending
            else:
                self.stats.calls += 1
                for record, result in zip(pending, response["Records"], strict=True):
                    if "ErrorCode" in result:
                        if "Throttl" in result["ErrorCode"] or "Exceeded" in result["ErrorCode"]:
                            self.stats.throttled += 1
                        record.last_error = (result["ErrorCode"], result.get("ErrorMessage", ""))
                        retry.append(record)
                    else:
                        record.done = True
                        self.stats.sent += 1
                        self.stats.bytes_sent += record.size
            exhausted = [record for record in retry if record.attempts >= self.max_attempts]
            for record in exhausted:
                record.done = True
                self.stats.failed += 1
                self.given_up.append(
                    FailedRecord(record.entry["Data"], record.entry["PartitionKey"], *record.last_error)
                )
            pending = [record for record in retry if record.attempts < self.max_attempts]
            if pending:
                self.stats.retried += len(pending)
                self._sleep(self._backoff(max(record.attempts for record in pending)))

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(max_delay, base * 2**(attempt-1)))."""
        return self._rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass
class RateLimiter:
    """A token bucket: `acquire(n)` blocks until n tokens are available at `rate` per second.

    `burst` bounds how far a caller may catch up after a pause (default: a tenth of a second of
    tokens, at least 1), which keeps the output steady. `sleep` may be e.g. `stop_event.wait` so a
    stop request interrupts the wait.
    """

    rate: float
    burst: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Any] = time.sleep
    _tokens: float = field(default=0.0, init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.burst is None:
            self.burst = max(1.0, self.rate / 10)

    def acquire(self, n: float = 1) -> None:
        now = self.clock()
        if self._last is None:
            self._last, self._tokens = now, min(self.burst, n)
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < n:
            self.sleep((n - self._tokens) / self.rate)
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self._tokens -= n
