"""`make demo` / `python -m local demo`: the whole pipeline end to end on the embedded stack.

1. simulate the history, export it, upload it to the stack's S3 bucket; the SQL migrations (applied
   by the apply_sql handler) COPY it into the warehouse;
2. train the model with the train_model handler (CREATE MODEL), wait for READY, promote it;
3. stream live transactions of the same world at --rate for --minutes (labels after the delay),
   while the scheduler runs score_and_alert and feeds the alert queue to act_on_alert;
4. show it live, then drain, measure against the simulator's ground truth and write out/report.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.template import REPO, TemplateError

DEMO_ENV = {
    # Locally the cycles run nearly back to back (each refreshes the transaction MV first), so an alert
    # waits for at most one cycle; on AWS the template's PollIntervalSeconds (>= 1 s) applies.
    "POLL_INTERVAL_SECONDS": "0.1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",  # the live view owns the terminal
    "POWERTOOLS_METRICS_DISABLED": "true",
}


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


@dataclass
class DemoConfig:
    customers: int = 5000
    terminals: int | None = None  # default: the handbook's ratio, two per customer
    days: int = 183
    seed: int = 42
    rate: float = 1000.0
    minutes: float = 2.0
    out_dir: Path = REPO / "out"
    live_view: bool = True
    drain_timeout_s: float = 120.0
    refresh_interval_s: float = 1.0  # streaming MVs' AUTO REFRESH period
    env: dict[str, str] = field(default_factory=dict)  # extra function settings (e.g. ALERT_THRESHOLD)


@dataclass
class DemoResult:
    """Everything the demo measured; the report and the e2e test read it."""

    history_rows: int = 0
    history_frauds: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    model_name: str = ""
    show_model: list[tuple[str, str]] = field(default_factory=list)
    threshold: float = 0.5
    produced: int = 0
    produced_frauds: int = 0
    producer_failed: int = 0
    producer_rate: float = 0.0
    labels: int = 0
    ingested: int = 0
    ingested_distinct: int = 0
    scored: int = 0
    scored_distinct: int = 0
    scores: dict[int, float] = field(default_factory=dict)  # live transaction id -> score
    truth: dict[int, int] = field(default_factory=dict)  # live transaction id -> TX_FRAUD
    produced_at: dict[int, int] = field(default_factory=dict)
    alerts_outbox: dict[int, str] = field(default_factory=dict)  # transaction id -> status
    alerts_consumed: dict[int, int] = field(default_factory=dict)  # transaction id -> deliveries
    cases: dict[int, int] = field(default_factory=dict)  # transaction id -> case items
    card_locks: dict[int, tuple[int, set[int]]] = field(default_factory=dict)  # card -> (lock_count, tx ids)
    alert_customers: dict[int, int] = field(default_factory=dict)  # alerted transaction id -> customer id
    latencies_ms: list[int] = field(default_factory=list)
    alert_times: list[tuple[float, int]] = field(default_factory=list)  # (s since stream start, fraud)
    fraud_times: list[float] = field(default_factory=list)  # produced, s since stream start
    throughput: list[tuple[float, int, int, int]] = field(default_factory=list)
    lag_samples_s: list[float] = field(default_factory=list)
    drained: bool = False
    baseline: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)  # handler -> invocations and errors
    report_files: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def run_demo(config: DemoConfig, console: Any = None) -> DemoResult:
    """Run every step on a fresh local stack; raises DemoError with the failing step."""
    from rich.console import Console

    from local.seed import SeedError, load_history, train_first_model
    from local.stack import Stack, StackOptions

    console = console or Console()
    result = DemoResult()
    options = StackOptions(
        data_dir=config.out_dir / "demo-data",
        fresh=True,
        scheduler=False,
        apply_migrations=False,
        env_overrides={**DEMO_ENV, **config.env},
        refresh_interval_s=config.refresh_interval_s,
    )
    started = time.monotonic()
    with Stack(options) as stack:
        console.print(
            f"[bold]local stack up[/]: moto {stack.moto_url}, Redshift Data API {stack.redshift.url}"
        )
        try:
            seeded = load_history(
                stack,
                customers=config.customers,
                days=config.days,
                seed=config.seed,
                work_dir=config.out_dir,
                console=console,
                terminals=config.terminals,
            )
            train_first_model(stack, seeded, console)
        except SeedError as exc:
            raise DemoError(str(exc)) from exc
        result.history_rows, result.history_frauds = seeded.history_rows, seeded.history_frauds
        result.model_name, result.show_model = seeded.model_name, seeded.show_model
        result.timings_s.update(seeded.timings_s)
        reason = _start_baseline_model()  # trains while the stream runs
        if reason:
            result.baseline = {"available": False, "reason": reason}
        _stream(stack, config, seeded, result, console)
        _collect(stack, result)
    result.timings_s["total"] = time.monotonic() - started
    from local.report import compute_metrics, write_report

    result.metrics = compute_metrics(result)
    result.report_files = write_report(result, config, config.out_dir)
    return result


def _timed(result: DemoResult, name: str, started: float) -> None:
    result.timings_s[name] = time.monotonic() - started


def _stream(stack: Any, config: DemoConfig, seeded: Any, result: DemoResult, console: Any) -> None:
    from fraud_common.settings import AlertSettings
    from rich.live import Live

    from local.live import AlertDispatch, run_live
    from local.monitor import Monitor, render
    from producer.simulator import LiveSimulator

    result.threshold = AlertSettings.from_env().threshold
    dispatch = AlertDispatch()
    stack.start_scheduler(run_now=("score_and_alert",), on_sqs_batch=dispatch.on_alerts)
    duration = config.minutes * 60
    title = f"card fraud pipeline: {config.rate:,.0f} tx/s for {config.minutes:g} min"
    view = Live(render(Monitor(), title, 0, duration, "streaming"), console=console, refresh_per_second=2)
    last_line = [0.0]

    def on_tick(monitor: Any, phase: str, elapsed: float) -> None:
        if config.live_view:
            view.update(render(monitor, title, elapsed, duration, phase, _handler_line(stack)))
        elif elapsed - last_line[0] >= 10:  # without a terminal: one line every 10 s
            last_line[0] = elapsed
            console.print(f"{elapsed:4.0f}s {phase}: {monitor.one_line()}")

    t0 = time.monotonic()
    with view if config.live_view else contextlib.nullcontext():
        try:
            run = run_live(
                LiveSimulator(seeded.world, after=seeded.history),
                dispatch,
                rate=config.rate,
                duration_s=duration,
                drain_timeout_s=config.drain_timeout_s,
                on_tick=on_tick,
            )
        except RuntimeError as exc:
            raise DemoError(str(exc)) from exc
    _timed(result, "stream_and_drain", t0)
    stack.scheduler.stop()
    result.functions = {
        name: f"{st.invocations} invocations, {st.errors} errors"
        + (f" (last: {st.last_error[:150]})" if st.errors else "")
        for name, st in stack.scheduler.stats.items()
    }
    monitor, stats = run.monitor, run.stats
    result.drained, result.lag_samples_s = run.drained, run.lag_samples_s
    result.produced, result.produced_frauds = stats.transactions, stats.frauds
    result.producer_failed, result.producer_rate, result.labels = stats.failed, stats.rate, stats.labels
    result.truth, result.produced_at = dict(monitor.truth), dict(monitor.produced_at)
    result.throughput = list(monitor.history)
    stream_start_ms = min(monitor.produced_at.values()) if monitor.produced_at else 0
    result.fraud_times = [
        (monitor.produced_at[t] - stream_start_ms) / 1000 for t, f in monitor.truth.items() if f
    ]
    for alert in monitor.first_deliveries():
        if alert.latency_ms is not None:
            result.latencies_ms.append(alert.latency_ms)
            result.alert_times.append(((alert.consumed_ms - stream_start_ms) / 1000, alert.fraud or 0))
    for alert in monitor.alerts:
        result.alerts_consumed[alert.transaction_id] = result.alerts_consumed.get(alert.transaction_id, 0) + 1


def _handler_line(stack: Any) -> str:
    """Invocations and errors of the scheduled handlers, so a failing one shows at once."""
    parts = []
    for name, st in stack.scheduler.stats.items():
        text = f"{name}: {st.invocations} invocations"
        if st.errors:
            text += f", [red]{st.errors} errors[/] ({st.last_error[:80]})"
        parts.append(text)
    return " | ".join(parts)


def _collect(stack: Any, result: DemoResult) -> None:
    """Read back what the warehouse and the cases table hold for the live transactions."""
    import boto3
    from fraud_common.settings import ActionSettings

    from local.seed import data_api

    api = data_api()
    first_id = min(result.truth) if result.truth else 0
    params = {"first_id": first_id}
    row = api.query(
        "SELECT count(*) AS n, count(DISTINCT transaction_id) AS d FROM cust_payment_tx_stream"
        " WHERE transaction_id >= :first_id",
        params,
    )[0]
    result.ingested, result.ingested_distinct = int(row["n"]), int(row["d"])
    for r in api.query(
        "SELECT transaction_id, score FROM fraud_scores WHERE transaction_id >= :first_id", params
    ):
        tx = int(r["transaction_id"])
        result.scored += 1
        result.scores[tx] = float(r["score"])
    result.scored_distinct = len(result.scores)
    for r in api.query(
        "SELECT transaction_id, status FROM fraud_alerts WHERE transaction_id >= :first_id", params
    ):
        result.alerts_outbox[int(r["transaction_id"])] = str(r["status"])
    table = boto3.resource("dynamodb").Table(ActionSettings.from_env().cases_table)
    for item in _scan(table):
        pk = str(item.get("pk", ""))
        if pk.startswith("CASE#"):
            tx = int(pk[5:])
            result.cases[tx] = result.cases.get(tx, 0) + 1
            result.alert_customers[tx] = int(item.get("customer_id", -1))
        elif pk.startswith("CARD#"):
            txs = {int(t) for t in item.get("transaction_ids") or set()}
            result.card_locks[int(pk[5:])] = (int(item.get("lock_count", 0)), txs)
    result.baseline = _baseline(stack, api, result)


def _scan(table: Any) -> list[dict[str, Any]]:
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


BASELINE_MODEL = ("fraud_model_handbook", "fn_fraud_handbook")  # the article's 15 inputs


def _start_baseline_model() -> str | None:
    """Start CREATE MODEL on the handbook's 15 inputs, the model the article's views are scored with.

    Returns why it could not start (the demo then reports the baseline as not measured)."""
    from fraud_common import queries
    from fraud_common.settings import SqlSettings

    from local.seed import data_api

    name, function = BASELINE_MODEL
    placeholders = {**SqlSettings.from_env().placeholders(), "MODEL_NAME": name, "MODEL_FUNCTION": function}
    try:
        queries.run(data_api(), "create_model_handbook", placeholders)
    except Exception as exc:
        return str(exc).splitlines()[0][:200]
    return None


def _baseline(stack: Any, api: Any, result: DemoResult, timeout_s: float = 180.0) -> dict[str, Any]:
    """The article's predictions (sql/queries/baseline_predictions.sql, its getdate()-relative views),
    on the same live transactions, with getdate() set to the simulated "now" of the stream's end."""
    from fraud_common import queries
    from fraud_common.settings import SqlSettings

    from local.seed import show_model

    if result.baseline.get("reason"):
        return result.baseline
    name, function = BASELINE_MODEL
    deadline = time.monotonic() + timeout_s
    state = ""
    while state not in ("READY", "FAILED") and time.monotonic() < deadline:
        state = dict(show_model(api, name)).get("Model State", "").upper()
        time.sleep(0.5 if state not in ("READY", "FAILED") else 0)
    if state != "READY":
        return {"available": False, "reason": f"model {name} is {state or 'unknown'}"}
    first_id = min(result.truth) if result.truth else 0
    now = api.query(
        "SELECT max(tx_datetime) AS t FROM cust_payment_tx_stream WHERE transaction_id >= :first_id",
        {"first_id": first_id},
    )[0]["t"]
    placeholders = {**SqlSettings.from_env().placeholders(), "MODEL_NAME": name, "MODEL_FUNCTION": function}
    sql = queries.load("baseline_predictions", placeholders)
    stack.engine.set_clock(_as_datetime(now))  # the emulator's replay clock: GETDATE() = simulated now
    try:
        rows = api.query(
            f"SELECT transaction_id, fraud_prediction FROM ({sql}) b WHERE transaction_id >= :first_id",
            {"first_id": first_id},
        )
    except Exception as exc:
        return {"available": False, "reason": str(exc).splitlines()[0][:200]}
    finally:
        stack.engine.set_clock(None)
    predictions = {int(r["transaction_id"]): float(r["fraud_prediction"]) for r in rows}
    return {"available": True, "predictions": predictions, "clock": str(now)}


def _as_datetime(value: Any) -> Any:
    from datetime import datetime

    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# -- CLI ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=5000, help="customers in the world (default 5000)")
    parser.add_argument("--terminals", type=int, default=None, help="terminals (default 2 per customer)")
    parser.add_argument("--days", type=int, default=183, help="days of history (default 183)")
    parser.add_argument("--seed", type=int, default=42, help="simulation seed")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="live transactions per second (default 1000)"
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of live stream (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "out", help="report directory (default out/)")
    parser.add_argument("--no-live", action="store_true", help="no live view (for logs and CI)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="alert threshold (default: the template's)"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from local.report import summary
    from local.stack import StackError

    problems = []
    if args.customers < 10 or args.days < 1:
        problems.append("--customers must be >= 10 and --days >= 1")
    if args.rate <= 0 or args.minutes <= 0:
        problems.append("--rate and --minutes must be > 0")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        problems.append("--threshold must be in [0, 1]")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    config = DemoConfig(
        customers=args.customers,
        terminals=args.terminals,
        days=args.days,
        seed=args.seed,
        rate=args.rate,
        minutes=args.minutes,
        out_dir=args.out,
        live_view=not args.no_live,
        env={"ALERT_THRESHOLD": str(args.threshold)} if args.threshold is not None else {},
    )
    console = Console()
    try:
        result = run_demo(config, console)
    except (DemoError, StackError, TemplateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped", file=sys.stderr)
        return 130
    console.print(summary(result, config))
    return 0 if result.drained and result.producer_failed == 0 else 1
