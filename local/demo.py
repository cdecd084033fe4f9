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
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.template import REPO, TemplateError

# Where the history must be for the COPY statements of sql/migrations/002_history.sql.
HISTORY_PREFIX = "history/transactions"
CUSTOMER_INFO_PREFIX = "history/customer_info"
DEMO_ENV = {
    "POLL_INTERVAL_SECONDS": "0.5",  # score every half second: alert latency well under 2 s
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
    locked_cards: dict[int, int] = field(default_factory=dict)  # customer id -> lock items
    alert_customers: dict[int, int] = field(default_factory=dict)  # alerted transaction id -> customer id
    latencies_ms: list[int] = field(default_factory=list)
    alert_times: list[tuple[float, int]] = field(default_factory=list)  # (s since stream start, fraud)
    fraud_times: list[float] = field(default_factory=list)  # produced, s since stream start
    throughput: list[tuple[float, int, int, int]] = field(default_factory=list)
    lag_samples_s: list[float] = field(default_factory=list)
    drained: bool = False
    baseline: dict[str, Any] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def run_demo(config: DemoConfig, console: Any = None) -> DemoResult:
    """Run every step on a fresh local stack; raises DemoError with the failing step."""
    from rich.console import Console

    from local.stack import Stack, StackOptions

    console = console or Console()
    result = DemoResult()
    options = StackOptions(
        data_dir=config.out_dir / "demo-data",
        fresh=True,
        scheduler=False,
        apply_migrations=False,
        env_overrides={**DEMO_ENV, **config.env},
    )
    started = time.monotonic()
    with Stack(options) as stack:
        console.print(
            f"[bold]local stack up[/]: moto {stack.moto_url}, Redshift Data API {stack.redshift.url}"
        )
        world, history = _load_history(stack, config, result, console)
        _train(stack, result, console)
        _stream(stack, config, world, history, result, console)
        _collect(stack, result)
    result.timings_s["total"] = time.monotonic() - started
    from local.report import compute_metrics, write_report

    result.metrics = compute_metrics(result)
    result.report_files = write_report(result, config, config.out_dir)
    return result


def _timed(result: DemoResult, name: str, started: float) -> None:
    result.timings_s[name] = time.monotonic() - started


def _load_history(stack: Any, config: DemoConfig, result: DemoResult, console: Any) -> tuple[Any, Any]:
    from fraud_common.settings import SqlSettings

    from producer.export import export_history, upload_to_s3
    from producer.simulator import WorldConfig, customer_info, simulate_history

    sql = SqlSettings.from_env()
    t0 = time.monotonic()
    world_config = WorldConfig(
        n_customers=config.customers,
        n_terminals=config.terminals or 2 * config.customers,
        n_days=config.days,
        seed=config.seed,
    )
    with console.status(f"simulating {config.days} days of {config.customers:,} customers..."):
        world, history = simulate_history(world_config)
        info = customer_info(world)
    result.history_rows, result.history_frauds = len(history), int(history.TX_FRAUD.sum())
    _timed(result, "simulate", t0)
    console.print(
        f"history: {result.history_rows:,} transactions, {result.history_frauds:,} frauds "
        f"({result.history_frauds / max(result.history_rows, 1):.2%}) in {result.timings_s['simulate']:.1f} s"
    )
    t0 = time.monotonic()
    with console.status("exporting the history and uploading it to S3..."):
        paths = export_history(history, info, config.out_dir / "history", gzip=True)
        upload_to_s3([paths["transactions"]], f"s3://{sql.s3_bucket}/{HISTORY_PREFIX}")
        upload_to_s3([paths["customer_info"]], f"s3://{sql.s3_bucket}/{CUSTOMER_INFO_PREFIX}")
    _timed(result, "export_upload", t0)
    t0 = time.monotonic()
    with console.status(
        "applying the SQL migrations (apply_sql handler: streams, COPY, features, tables)..."
    ):
        try:
            stack.apply_migrations()
        except Exception as exc:
            raise DemoError(f"migrations: {exc}") from exc
    _timed(result, "migrations_copy", t0)
    loaded = _count(_api(), "SELECT count(*) AS n FROM cust_payment_tx_history")
    if loaded != result.history_rows:
        raise DemoError(f"COPY loaded {loaded:,} history rows, expected {result.history_rows:,}")
    console.print(
        f"migrations applied and history loaded by COPY ({loaded:,} rows) in {result.timings_s['migrations_copy']:.1f} s"
    )
    return world, history


def _api() -> Any:
    from fraud_common.dataapi import DataApi
    from fraud_common.settings import WarehouseSettings

    return DataApi(WarehouseSettings.from_env())


def _count(api: Any, sql: str, parameters: dict[str, Any] | None = None) -> int:
    return int(next(iter(api.query(sql, parameters)[0].values())))


def _event(stack: Any, dir_name: str, action: str) -> dict[str, Any]:
    from local.scheduler import event_file

    path = event_file(stack.function(dir_name), (action,))
    event = json.loads(path.read_text()) if path else {}
    event["action"] = action
    return event


def _invoke(stack: Any, dir_name: str, event: dict[str, Any]) -> Any:
    """Invoke a handler in-process; its failure becomes one line naming the function."""
    try:
        return stack.invoke(dir_name, event)
    except Exception as exc:
        raise DemoError(f"{dir_name} failed: {type(exc).__name__}: {exc}") from exc


def _train(stack: Any, result: DemoResult, console: Any) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    t0 = time.monotonic()
    outcome = _invoke(stack, "train_model", _event(stack, "train_model", "start"))
    model = outcome.get("started") if isinstance(outcome, dict) else None
    if not model:
        raise DemoError(f"train_model did not start a model version: {outcome}")
    result.model_name = model
    api = _api()
    state = "TRAINING"
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task(f"CREATE MODEL {model}: TRAINING", total=None)
        while state not in ("READY", "FAILED"):
            time.sleep(1.0)
            rows = _show_model(api, model)
            state = dict(rows).get("Model State", "TRAINING").upper()
            bar.update(task, description=f"CREATE MODEL {model}: {state}")
    result.show_model = _show_model(api, model)
    if state == "FAILED":
        raise DemoError(f"model {model} failed: {dict(result.show_model).get('Failure Reason', '')}")
    outcome = _invoke(stack, "train_model", _event(stack, "train_model", "check"))
    if model not in (outcome.get("promoted") or []):
        raise DemoError(f"model {model} is READY but train_model did not promote it: {outcome}")
    _timed(result, "train", t0)
    table = Table(title=f"SHOW MODEL {model}", show_header=False)
    for key, value in result.show_model:
        table.add_row(key, value if len(value) < 100 else value[:97] + "...")
    console.print(table)
    console.print(f"model trained and promoted in {result.timings_s['train']:.1f} s")


def _show_model(api: Any, model: str) -> list[tuple[str, str]]:
    rows = api.query(f"SHOW MODEL {model}")  # model comes from train_model's own identifier check
    return [
        (str(k).strip(), "" if v is None else str(v).strip()) for k, v in (list(r.values())[:2] for r in rows)
    ]


def _stream(
    stack: Any, config: DemoConfig, world: Any, history: Any, result: DemoResult, console: Any
) -> None:
    from fraud_common.settings import AlertSettings, SqlSettings
    from rich.live import Live

    from local.monitor import Monitor, render
    from producer.kinesis import KinesisWriter
    from producer.simulator import LiveSimulator
    from producer.stream import run_stream

    sql = SqlSettings.from_env()
    result.threshold = AlertSettings.from_env().threshold
    monitor = Monitor()
    stack.start_scheduler(run_now=("score_and_alert",), on_sqs_batch=monitor.on_alerts)
    live = LiveSimulator(world, after=history)
    tx_writer, label_writer = KinesisWriter(sql.tx_stream), KinesisWriter(sql.label_stream)
    stop = threading.Event()
    duration = config.minutes * 60
    box: dict[str, Any] = {}

    def produce() -> None:
        try:
            box["stats"] = run_stream(
                live,
                tx_writer,
                label_writer,
                config.rate,
                duration_s=duration,
                stop_event=stop,
                on_produced=monitor.on_produced,
            )
        except Exception as exc:  # reported after the view closes
            box["error"] = exc

    api = _api()
    producer = threading.Thread(target=produce, name="producer", daemon=True)
    t0 = time.monotonic()
    producer.start()
    title = f"card fraud pipeline: {config.rate:,.0f} tx/s for {config.minutes:g} min"
    drain_deadline = None
    with Live(
        render(monitor, title, 0, duration, "streaming"),
        console=console,
        refresh_per_second=2,
        transient=False,
    ) as view:
        view_enabled = config.live_view
        try:
            while True:
                time.sleep(0.5)
                progress = monitor.poll(api)
                if progress.ingestion_lag_s is not None and producer.is_alive():
                    result.lag_samples_s.append(progress.ingestion_lag_s)
                phase = "streaming" if producer.is_alive() else "draining"
                if view_enabled:
                    view.update(render(monitor, title, time.monotonic() - t0, duration, phase))
                if producer.is_alive():
                    continue
                drain_deadline = drain_deadline or time.monotonic() + config.drain_timeout_s
                if _drained(monitor) or time.monotonic() > drain_deadline:
                    break
        except KeyboardInterrupt:
            stop.set()
            producer.join()
            raise
    _timed(result, "stream_and_drain", t0)
    if "error" in box:
        raise DemoError(f"the producer failed: {box['error']}")
    stats = box["stats"]
    result.drained = _drained(monitor)
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
    stack.scheduler.stop()


def _drained(monitor: Any) -> bool:
    """Everything produced is scored and every alert in the outbox was sent and consumed."""
    p = monitor.progress
    consumed = len(monitor.first_deliveries())
    return p.scored >= monitor.produced and p.alerts_sent == p.alerts_enqueued and consumed >= p.alerts_sent


def _collect(stack: Any, result: DemoResult) -> None:
    """Read back what the warehouse and the cases table hold for the live transactions."""
    import boto3
    from fraud_common.settings import ActionSettings

    api = _api()
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
            card = int(pk[5:])
            result.locked_cards[card] = result.locked_cards.get(card, 0) + 1
    result.baseline = _baseline(api, result)


def _scan(table: Any) -> list[dict[str, Any]]:
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _baseline(api: Any, result: DemoResult) -> dict[str, Any]:
    """The article's own predictions view (baseline_), on the same live transactions, if it exists."""
    try:
        rows = api.query(
            "SELECT transaction_id, prediction FROM baseline_cust_payment_tx_fraud_predictions"
            " WHERE transaction_id >= :first_id",
            {"first_id": min(result.truth) if result.truth else 0},
        )
    except Exception as exc:  # the SQL engineer's baseline views are optional for the demo
        return {"available": False, "reason": str(exc).splitlines()[0][:200]}
    predictions = {int(r["transaction_id"]): float(r["prediction"]) for r in rows}
    return {"available": True, "predictions": predictions}


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
