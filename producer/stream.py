"""Stream a live simulation to Kinesis: transactions now, labels after a simulated delay.

    stats = run_stream(live, tx_writer, label_writer, rate=1000, duration_s=60)

Safe to run in a thread: pass a `threading.Event` as `stop_event` and set it to stop; buffered records
are flushed before returning. Record formats (ARCHITECTURE.md section 3):

- transaction (partition key = customer id): TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID,
  TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS, PRODUCED_AT (wall-clock epoch ms). No label.
- label (partition key = customer id): TRANSACTION_ID, TX_FRAUD, LABELLED_AT (simulated event time
  at which the label became known: TX_DATETIME + the delay, "YYYY-MM-DD HH:MM:SS"), PRODUCED_AT.

A label is published once the simulated event time of the transactions being produced has passed
its transaction's time plus `label_delay_days`; labels not yet due at the stop are not published
(counted as `labels_pending`).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from producer.kinesis import KinesisWriter, RateLimiter, WriterStats
from producer.simulator import SECONDS_PER_DAY, LiveSimulator, LiveTransaction

OnProduced = Callable[[LiveTransaction, int], None]


def transaction_record(tx: LiveTransaction, produced_at_ms: int) -> bytes:
    """The stream JSON of one transaction (without its label)."""
    return json.dumps(
        {
            "TRANSACTION_ID": tx.TRANSACTION_ID,
            "TX_DATETIME": tx.TX_DATETIME,
            "CUSTOMER_ID": tx.CUSTOMER_ID,
            "TERMINAL_ID": tx.TERMINAL_ID,
            "TX_AMOUNT": round(tx.TX_AMOUNT, 2),
            "TX_TIME_SECONDS": tx.TX_TIME_SECONDS,
            "TX_TIME_DAYS": tx.TX_TIME_DAYS,
            "PRODUCED_AT": produced_at_ms,
        },
        separators=(",", ":"),
    ).encode("utf-8")


def label_record(transaction_id: int, tx_fraud: int, labelled_at: str, produced_at_ms: int) -> bytes:
    """The stream JSON of one label."""
    return json.dumps(
        {
            "TRANSACTION_ID": transaction_id,
            "TX_FRAUD": tx_fraud,
            "LABELLED_AT": labelled_at,
            "PRODUCED_AT": produced_at_ms,
        },
        separators=(",", ":"),
    ).encode("utf-8")


@dataclass
class StreamStats:
    """What one run_stream call produced. `failed` > 0 means records were given up on."""

    transactions: int = 0  # handed to the transaction writer
    frauds: int = 0  # of which labelled fraud (ground truth)
    labels: int = 0  # handed to the label writer
    labels_pending: int = 0  # not yet due when the run stopped
    first_tx_datetime: str | None = None
    last_tx_datetime: str | None = None
    wall_seconds: float = 0.0
    stopped_by: str = ""  # "duration", "max_records" or "stop_event"
    tx_writer: WriterStats = field(default_factory=WriterStats)
    label_writer: WriterStats | None = None

    @property
    def failed(self) -> int:
        return self.tx_writer.failed + (self.label_writer.failed if self.label_writer else 0)

    @property
    def rate(self) -> float:
        """Transactions per wall-clock second achieved."""
        return self.transactions / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _labelled_at(start_date: dt.date, due_seconds: int) -> str:
    return (dt.datetime.combine(start_date, dt.time()) + dt.timedelta(seconds=due_seconds)).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def run_stream(
    live: LiveSimulator | Iterable[LiveTransaction],
    tx_writer: KinesisWriter,
    label_writer: KinesisWriter | None,
    rate: float,
    duration_s: float | None = None,
    max_records: int | None = None,
    label_delay_days: float = 7,
    stop_event: threading.Event | None = None,
    on_produced: OnProduced | None = None,
    start_date: dt.date | None = None,
) -> StreamStats:
    """Produce transactions at `rate` per second until the duration, the count or the stop event.

    `on_produced(tx, produced_at_ms)` is called for each transaction after it is handed to the writer
    (tx carries TX_FRAUD / TX_FRAUD_SCENARIO, the ground truth). Both writers are flushed before
    returning, also when stopped. Non-retryable writer errors (e.g. the stream was deleted) propagate
    after a best-effort flush of the other writer; unsent records stay in the writers' buffers.
    """
    if duration_s is not None and duration_s < 0:
        raise ValueError("duration_s must be >= 0")
    if max_records is not None and max_records < 0:
        raise ValueError("max_records must be >= 0")
    if label_delay_days < 0:
        raise ValueError("label_delay_days must be >= 0")
    stop_event = stop_event or threading.Event()
    if start_date is None:
        if not isinstance(live, LiveSimulator):
            raise ValueError("start_date is required when `live` is not a LiveSimulator")
        start_date = live.world.config.start_date
    limiter = RateLimiter(rate, sleep=stop_event.wait)
    delay_s = round(label_delay_days * SECONDS_PER_DAY)
    due_labels: collections.deque[tuple[int, int, int, str]] = collections.deque()
    stats = StreamStats(tx_writer=tx_writer.stats, label_writer=label_writer.stats if label_writer else None)
    started = time.monotonic()
    deadline = None if duration_s is None else started + duration_s
    transactions = iter(live)

    try:
        while True:
            if stop_event.is_set():
                stats.stopped_by = "stop_event"
                break
            if max_records is not None and stats.transactions >= max_records:
                stats.stopped_by = "max_records"
                break
            if deadline is not None and time.monotonic() >= deadline:
                stats.stopped_by = "duration"
                break
            limiter.acquire()
            if stop_event.is_set():
                stats.stopped_by = "stop_event"
                break
            tx = next(transactions)
            produced_at_ms = time.time_ns() // 1_000_000
            partition_key = str(tx.CUSTOMER_ID)
            tx_writer.put(transaction_record(tx, produced_at_ms), partition_key)
            stats.transactions += 1
            stats.frauds += tx.TX_FRAUD
            if stats.first_tx_datetime is None:
                stats.first_tx_datetime = tx.TX_DATETIME
            stats.last_tx_datetime = tx.TX_DATETIME
            if on_produced is not None:
                on_produced(tx, produced_at_ms)
            if label_writer is not None:
                due_labels.append(
                    (tx.TX_TIME_SECONDS + delay_s, tx.TRANSACTION_ID, tx.TX_FRAUD, partition_key)
                )
                while due_labels and due_labels[0][0] <= tx.TX_TIME_SECONDS:
                    due_s, tx_id, fraud, key = due_labels.popleft()
                    label_writer.put(
                        label_record(tx_id, fraud, _labelled_at(start_date, due_s), produced_at_ms), key
                    )
                    stats.labels += 1
                label_writer.flush_if_due()
            tx_writer.flush_if_due()
    finally:
        stats.labels_pending = len(due_labels)
        try:
            tx_writer.flush()
        finally:
            if label_writer is not None:
                label_writer.flush()
            stats.wall_seconds = time.monotonic() - started
    return stats
