"""Stream live transactions through the running local pipeline and watch it until it has caught up.

Used by the demo (one run, with the rich view) and bench/e2e.py (one run per rate). The scheduler
must be running with `on_sqs_batch=dispatch.on_alerts` of an `AlertDispatch`, so each run's Monitor
sees the alerts handed to act_on_alert.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.monitor import Monitor

OnTick = Callable[[Monitor, str, float], None]  # (monitor, "streaming" | "draining", elapsed s)


class AlertDispatch:
    """The scheduler's SQS observer, forwarding to the current run's Monitor."""

    def __init__(self) -> None:
        self.monitor: Monitor | None = None

    def on_alerts(self, spec: Any, records: list[dict[str, Any]]) -> None:
        if self.monitor is not None:
            self.monitor.on_alerts(spec, records)


@dataclass
class LiveRun:
    monitor: Monitor
    stats: Any = None  # producer.stream.StreamStats
    drained: bool = False
    stream_s: float = 0.0  # producer start -> producer done
    total_s: float = 0.0  # producer start -> drained (or the drain timeout)
    lag_samples_s: list[float] = field(default_factory=list)


def drained(monitor: Monitor) -> bool:
    """Everything produced is scored, and every alert in the outbox was sent and consumed."""
    p = monitor.progress
    consumed = len(monitor.first_deliveries())
    return p.scored >= monitor.produced and p.alerts_sent == p.alerts_enqueued and consumed >= p.alerts_sent


def run_live(
    live: Any,
    dispatch: AlertDispatch,
    *,
    rate: float,
    duration_s: float,
    drain_timeout_s: float,
    on_tick: OnTick | None = None,
    tick_s: float = 0.5,
    settle_s: float = 3.0,
) -> LiveRun:
    """Produce at `rate` for `duration_s` (labels after the delay), then wait until drained.

    Drained must hold for `settle_s` (several scoring cycles): a cycle commits its scores before it
    enqueues their alerts, so one look could see everything scored and the outbox not yet filled."""
    from fraud_common.settings import SqlSettings

    from local.seed import data_api
    from producer.kinesis import KinesisWriter
    from producer.stream import run_stream

    sql = SqlSettings.from_env()
    api = data_api()
    monitor = Monitor()
    monitor.set_baseline(api)
    dispatch.monitor = monitor
    run = LiveRun(monitor)
    tx_writer, label_writer = KinesisWriter(sql.tx_stream), KinesisWriter(sql.label_stream)
    stop = threading.Event()
    box: dict[str, Any] = {}

    def produce() -> None:
        try:
            box["stats"] = run_stream(
                live,
                tx_writer,
                label_writer,
                rate,
                duration_s=duration_s,
                stop_event=stop,
                on_produced=monitor.on_produced,
            )
        except Exception as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    producer = threading.Thread(target=produce, name="producer", daemon=True)
    t0 = time.monotonic()
    producer.start()
    drain_deadline = None
    settled_since = None
    try:
        while True:
            time.sleep(tick_s)
            progress = monitor.poll(api)
            streaming = producer.is_alive()
            if streaming and progress.ingestion_lag_s is not None:
                run.lag_samples_s.append(progress.ingestion_lag_s)
            if on_tick is not None:
                on_tick(monitor, "streaming" if streaming else "draining", time.monotonic() - t0)
            if streaming:
                continue
            if drain_deadline is None:
                run.stream_s = time.monotonic() - t0
                drain_deadline = time.monotonic() + drain_timeout_s
            if not drained(monitor):
                settled_since = None
            elif settled_since is None:
                settled_since = time.monotonic()
            if (settled_since is not None and time.monotonic() - settled_since >= settle_s) or (
                time.monotonic() > drain_deadline
            ):
                break
    except KeyboardInterrupt:
        stop.set()
        producer.join()
        raise
    run.total_s = time.monotonic() - t0
    if "error" in box:
        raise RuntimeError(f"the producer failed: {box['error']}") from box["error"]
    run.stats = box["stats"]
    run.drained = drained(monitor)
    return run
