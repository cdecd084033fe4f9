"""What the demo measures while the pipeline runs, and the rich live view of it.

Three sources, each where the number is true:
- the producer (`on_produced`): every transaction handed to Kinesis, its wall-clock timestamp and
  its ground-truth label from the simulator;
- the SQS event source (`on_alerts`): every alert at the moment the scheduler hands it to
  `act_on_alert` (alert latency = that moment minus the producer timestamp);
- the warehouse, polled through the Data API (`poll`): rows ingested by the streaming MV, scored,
  in the outbox.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# One query per poll: how far ingestion, scoring and the outbox have come.
PROGRESS_SQL = """
SELECT (SELECT count(*) FROM cust_payment_tx_stream) AS ingested,
       (SELECT count(*) FROM fraud_scores) AS scored,
       (SELECT count(*) FROM fraud_alerts) AS alerts_enqueued,
       (SELECT count(*) FROM fraud_alerts WHERE status = 'sent') AS alerts_sent
"""


@dataclass
class AlertSeen:
    transaction_id: int
    consumed_ms: int
    latency_ms: int | None
    customer: str
    amount: float | None
    score: float | None
    reasons: str
    fraud: int | None  # ground truth, None if the transaction was not produced by this run
    stages_ms: dict[str, int] = field(default_factory=dict)  # stage -> ms it took (see STAGES)


# Where an alert's latency goes, from the timestamps the alert carries (warehouse clock, UTC):
# stage -> (start field, end field); "consumed" is the moment act_on_alert is handed the alert.
# scored_at is the scoring statement's SYSDATE (its start, to the microsecond).
STAGES = {
    "to stream": ("produced_at", "arrived_at"),  # producer batching, PutRecords
    "to scored": ("arrived_at", "scored_at"),  # wait for the cycle, MV refresh
    "to published": ("scored_at", "published_at"),  # scoring statement, outbox, PublishBatch
    "to consumer": ("published_at", "consumed"),  # SNS -> SQS -> a free poller
}


@dataclass
class Progress:
    ingested: int = 0
    scored: int = 0
    alerts_enqueued: int = 0
    alerts_sent: int = 0
    ingestion_lag_s: float | None = None


@dataclass
class Monitor:
    started: float = field(default_factory=time.monotonic)
    produced: int = 0
    frauds_produced: int = 0
    produced_at: dict[int, int] = field(default_factory=dict)  # transaction id -> epoch ms
    produced_order: list[int] = field(default_factory=list)  # epoch ms, in production order
    truth: dict[int, int] = field(default_factory=dict)  # transaction id -> TX_FRAUD
    alerts: list[AlertSeen] = field(default_factory=list)  # every delivery, duplicates included
    progress: Progress = field(default_factory=Progress)
    history: list[tuple[float, int, int, int]] = field(
        default_factory=list
    )  # (t, produced, ingested, scored)
    latest: deque[AlertSeen] = field(default_factory=lambda: deque(maxlen=6))
    poll_errors: int = 0
    baseline: Progress = field(default_factory=Progress)  # warehouse counts before this run
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- feeds ---------------------------------------------------------------------------------------

    def on_produced(self, produced: Sequence[tuple[int, int, int]]) -> None:
        """Transactions handed to Kinesis, in order: (transaction id, TX_FRAUD, epoch ms) each."""
        with self._lock:
            for transaction_id, fraud, produced_at_ms in produced:
                self.produced += 1
                self.frauds_produced += fraud
                self.produced_at[transaction_id] = produced_at_ms
                self.produced_order.append(produced_at_ms)
                self.truth[transaction_id] = fraud

    def on_alerts(self, _spec: Any, records: list[dict[str, Any]]) -> None:
        from fraud_common.actions import BadAlert, parse_alert

        now_ms = time.time_ns() // 1_000_000
        for record in records:
            try:
                alert = parse_alert(record["body"])
            except BadAlert:
                continue  # act_on_alert reports it; not an alert of ours
            tx_id = alert["transaction_id"]
            with self._lock:
                produced = self.produced_at.get(tx_id)
                seen = AlertSeen(
                    transaction_id=tx_id,
                    consumed_ms=now_ms,
                    latency_ms=now_ms - produced if produced is not None else None,
                    customer=str(
                        alert.get("full_name") or alert.get("customer_name") or alert["customer_id"]
                    ),
                    amount=_float(alert.get("tx_amount", alert.get("amount"))),
                    score=_float(alert.get("score")),
                    reasons=str(alert.get("reasons") or ""),
                    fraud=self.truth.get(tx_id),
                    stages_ms=_stages_ms(alert, now_ms),
                )
                self.alerts.append(seen)
                self.latest.appendleft(seen)

    def set_baseline(self, api: Any) -> None:
        """Count from here: what the warehouse already holds belongs to earlier runs."""
        self.baseline = self._read(api)
        self.baseline.ingestion_lag_s = None

    def _read(self, api: Any) -> Progress:
        row = api.query(PROGRESS_SQL)[0]
        return Progress(
            ingested=int(row["ingested"]),
            scored=int(row["scored"]),
            alerts_enqueued=int(row["alerts_enqueued"]),
            alerts_sent=int(row["alerts_sent"]),
        )

    def poll(self, api: Any) -> Progress:
        """Read the warehouse's progress since the baseline (one Data API statement)."""
        try:
            now = self._read(api)
        except Exception:  # a busy warehouse must not stop the view; the next poll tries again
            self.poll_errors += 1
            return self.progress
        base = self.baseline
        progress = Progress(
            ingested=now.ingested - base.ingested,
            scored=now.scored - base.scored,
            alerts_enqueued=now.alerts_enqueued - base.alerts_enqueued,
            alerts_sent=now.alerts_sent - base.alerts_sent,
        )
        progress.ingestion_lag_s = self._backlog_age(progress.ingested)
        with self._lock:
            self.progress = progress
            self.history.append(
                (time.monotonic() - self.started, self.produced, progress.ingested, progress.scored)
            )
        return progress

    def _backlog_age(self, ingested: int) -> float | None:
        """Ingestion lag: how long the oldest produced-but-not-ingested transaction has waited (0 when
        the warehouse holds everything produced). Shards are read in parallel, so "oldest" is the
        ingested count's position in production order, a close approximation."""
        with self._lock:
            if not self.produced_order:
                return None
            if ingested >= len(self.produced_order):
                return 0.0
            waiting_since = self.produced_order[max(ingested, 0)]
        return max(0.0, (time.time_ns() // 1_000_000 - waiting_since) / 1000)

    # -- derived numbers -----------------------------------------------------------------------------

    def first_deliveries(self) -> list[AlertSeen]:
        """Each alerted transaction once (its first delivery): what latency and precision count."""
        seen: dict[int, AlertSeen] = {}
        with self._lock:
            for alert in self.alerts:
                seen.setdefault(alert.transaction_id, alert)
        return list(seen.values())

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        latencies = [a.latency_ms for a in self.first_deliveries() if a.latency_ms is not None]
        if not latencies:
            return None, None
        p50, p99 = np.percentile(np.array(latencies, dtype=float), [50, 99])
        return float(p50) / 1000, float(p99) / 1000

    def stage_percentiles(self) -> dict[str, tuple[float, float]]:
        """Seconds each stage of the alert path took (p50, p99), over the alerts that carry them."""
        out = {}
        alerts = self.first_deliveries()
        for stage in STAGES:
            values = [a.stages_ms[stage] for a in alerts if stage in a.stages_ms]
            if values:
                p50, p99 = np.percentile(np.array(values, dtype=float), [50, 99])
                out[stage] = (float(p50) / 1000, float(p99) / 1000)
        return out

    def precision_recall(self) -> tuple[float | None, float | None]:
        """Alerts against the simulator's ground truth; frauds still in flight count as missed."""
        alerted = [a for a in self.first_deliveries() if a.fraud is not None]
        true_alerts = sum(a.fraud for a in alerted)
        precision = true_alerts / len(alerted) if alerted else None
        recall = true_alerts / self.frauds_produced if self.frauds_produced else None
        return precision, recall

    def rates(self, window_s: float = 5.0) -> tuple[float, float, float]:
        """Produced, ingested, scored per second over the last few seconds."""
        with self._lock:
            if len(self.history) < 2:
                return 0.0, 0.0, 0.0
            last = self.history[-1]
            first = next((h for h in self.history if h[0] >= last[0] - window_s), self.history[0])
        span = last[0] - first[0]
        if span <= 0:
            return 0.0, 0.0, 0.0
        return tuple((last[i] - first[i]) / span for i in (1, 2, 3))  # type: ignore[return-value]

    def one_line(self) -> str:
        p50, p99 = self.latency_percentiles()
        prog = self.progress
        return (
            f"produced {self.produced:,} ingested {prog.ingested:,} scored {prog.scored:,} "
            f"alerts {prog.alerts_sent:,} sent / {len(self.first_deliveries()):,} consumed, "
            f"lag {_seconds(prog.ingestion_lag_s)}, latency p50 {_seconds(p50)} p99 {_seconds(p99)}"
        )


def _epoch_ms(value: Any) -> int | None:
    """An alert timestamp (epoch ms, or ISO text, UTC when naive) in epoch ms; None if absent or invalid."""
    from datetime import UTC, datetime

    if isinstance(value, int | float):
        return int(value)
    try:
        moment = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _stages_ms(alert: dict[str, Any], consumed_ms: int) -> dict[str, int]:
    moments = {name: _epoch_ms(alert.get(name)) for name in ("produced_at", "arrived_at", "scored_at")}
    moments.update(published_at=_epoch_ms(alert.get("published_at")), consumed=consumed_ms)
    return {
        stage: moments[end] - moments[start]  # type: ignore[operator]
        for stage, (start, end) in STAGES.items()
        if moments.get(start) is not None and moments.get(end) is not None
    }


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def render(
    monitor: Monitor, title: str, elapsed_s: float, total_s: float, phase: str, footer: str = ""
) -> Any:
    """The live view: throughput, lag, latency, quality, the latest alerts."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    produced_s, ingested_s, scored_s = monitor.rates()
    p50, p99 = monitor.latency_percentiles()
    precision, recall = monitor.precision_recall()
    prog = monitor.progress
    numbers = Table.grid(padding=(0, 3))
    for _ in range(4):
        numbers.add_column(justify="right")
    numbers.add_row("produced/s", f"{produced_s:,.0f}", "total produced", f"{monitor.produced:,}")
    numbers.add_row("ingested/s", f"{ingested_s:,.0f}", "total ingested", f"{prog.ingested:,}")
    numbers.add_row("scored/s", f"{scored_s:,.0f}", "total scored", f"{prog.scored:,}")
    numbers.add_row(
        "ingestion lag",
        _seconds(prog.ingestion_lag_s),
        "alerts (sent / consumed)",
        f"{prog.alerts_sent:,} / {len(monitor.first_deliveries()):,}",
    )
    numbers.add_row("alert latency p50", _seconds(p50), "alert latency p99", _seconds(p99))
    numbers.add_row(
        "precision (live)",
        _ratio(precision),
        "recall (live)",
        _ratio(recall) + f"  of {monitor.frauds_produced:,} frauds",
    )
    latest = Table(title="latest alerts", expand=True, title_justify="left")
    for col, justify, width in (
        ("tx", "right", 9),
        ("customer", "left", 18),
        ("amount", "right", 9),
        ("score", "right", 5),
        ("fraud?", "center", 7),
    ):
        latest.add_column(col, justify=justify, min_width=width, no_wrap=True)
    latest.add_column("reasons", ratio=1, overflow="ellipsis", no_wrap=True)  # one line per alert
    for alert in list(monitor.latest):
        latest.add_row(
            str(alert.transaction_id),
            alert.customer,
            f"{alert.amount:,.2f}" if alert.amount is not None else "",
            f"{alert.score:.3f}" if alert.score is not None else "",
            {1: "[red]fraud[/]", 0: "genuine", None: "?"}[alert.fraud],
            alert.reasons,
        )
    header = f"{phase}  {elapsed_s:5.0f}s / {total_s:.0f}s"
    parts = [numbers, latest] + ([footer] if footer else [])
    return Panel(Group(*parts), title=title, subtitle=header)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
