"""Stream live transactions through the running local pipeline and watch it until it has caught up.

Used by the demo (one run, with the rich view) and bench/e2e.py (one run per rate). The scheduler
must be running with `on_sqs_batch=dispatch.on_alerts` of an `AlertDispatch`, so each run's Monitor
sees the alerts handed to act_on_alert.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
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
    producer_cpu_s: float = 0.0  # CPU of the producer process while it produced


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

    The producer runs in its own process, as it runs on its own EC2 instance on AWS: in the stack's
    process its JSON, signing and HTTP took a third of the GIL's time at 2,000 tx/s (py-spy --gil),
    which every Data API call, refresh and handler then waited for. `live` (a LiveSimulator) is
    continued in the child; its cursor comes back, so the next run continues the same world.

    Drained must hold for `settle_s` (several scoring cycles): a cycle commits its scores before it
    enqueues their alerts, so one look could see everything scored and the outbox not yet filled."""
    from fraud_common.settings import SqlSettings

    from local.seed import data_api

    sql = SqlSettings.from_env()
    api = data_api()
    monitor = Monitor()
    monitor.set_baseline(api)
    dispatch.monitor = monitor
    run = LiveRun(monitor)
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    producer = context.Process(
        target=_produce,
        args=(sender, stop, live, sql.tx_stream, sql.label_stream, rate, duration_s),
        name="producer",
        daemon=True,
    )
    box: dict[str, Any] = {}
    t0 = time.monotonic()
    producer.start()
    sender.close()  # the child's end: EOF here when the child is gone
    feed = threading.Thread(target=_receive, args=(receiver, monitor, box), name="producer-feed", daemon=True)
    feed.start()
    drain_deadline = None
    settled_since = None
    try:
        while True:
            time.sleep(tick_s)
            progress = monitor.poll(api)
            streaming = feed.is_alive()
            if streaming and progress.ingestion_lag_s is not None:
                run.lag_samples_s.append(progress.ingestion_lag_s)
            if on_tick is not None:
                on_tick(monitor, "streaming" if streaming else "draining", time.monotonic() - t0)
            if streaming:
                continue
            if drain_deadline is None:
                run.stream_s = time.monotonic() - t0
                drain_deadline = time.monotonic() + drain_timeout_s
                if "error" in box:
                    break
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
        feed.join()
        raise
    finally:
        producer.join(timeout=30)
        receiver.close()
    run.total_s = time.monotonic() - t0
    if "error" in box:
        raise RuntimeError(f"the producer failed: {box['error']}")
    run.stats, run.producer_cpu_s = box["stats"], box["cpu_s"]
    live.day, live.next_transaction_id = box["cursor"]
    run.drained = drained(monitor)
    return run


PRODUCED_BATCH = 200  # transactions per message to the parent at most
PRODUCED_EVERY_S = 0.05  # and at least this often while producing


def _produce(
    sender: Connection,
    stop: Any,
    live: Any,
    tx_stream: str,
    label_stream: str,
    rate: float,
    duration_s: float,
) -> None:
    """The producer process: run_stream, reporting (transaction id, TX_FRAUD, epoch ms) of what it
    produced in small batches, then ("done", stats, cursor, CPU s), or ("error", message)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    from producer.kinesis import KinesisWriter
    from producer.stream import run_stream

    stopped = threading.Event()  # run_stream waits on it between records: a local event is cheap
    threading.Thread(target=lambda: (stop.wait(), stopped.set()), daemon=True).start()
    produced: list[tuple[int, int, int]] = []
    sent_at = [time.monotonic()]

    def on_produced(tx: Any, produced_at_ms: int) -> None:
        produced.append((tx.TRANSACTION_ID, tx.TX_FRAUD, produced_at_ms))
        if len(produced) >= PRODUCED_BATCH or time.monotonic() - sent_at[0] >= PRODUCED_EVERY_S:
            sender.send(produced[:])
            produced.clear()
            sent_at[0] = time.monotonic()

    cpu_before = time.process_time()
    try:
        stats = run_stream(
            live,
            KinesisWriter(tx_stream),
            KinesisWriter(label_stream),
            rate,
            duration_s=duration_s,
            stop_event=stopped,
            on_produced=on_produced,
        )
        sender.send(produced)
        sender.send(("done", stats, (live.day, live.next_transaction_id), time.process_time() - cpu_before))
    except Exception as exc:  # the parent raises it
        sender.send(produced)
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()


def _receive(receiver: Connection, monitor: Monitor, box: dict[str, Any]) -> None:
    """Feed the monitor from the producer process until it reports its end (or dies)."""
    while True:
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            box.setdefault("error", "the producer process ended without a report")
            return
        if isinstance(message, list):
            monitor.on_produced(message)
            continue
        kind, *rest = message
        if kind == "done":
            box["stats"], box["cursor"], box["cpu_s"] = rest
        else:
            box["error"] = rest[0]
        return
