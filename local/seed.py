"""Load a simulated history and train the first model on a running local stack.

The deployment runbook's "load history, train the first model", done with the product's own code:
the producer's simulator and export, an upload to the template's bucket, the SQL migrations (whose
COPY statements read that upload) through the apply_sql handler, then train_model's `start` and,
once SHOW MODEL says READY, its `check`, which promotes the version. Used by `up` and the demo.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where the history must be for the COPY statements of sql/migrations/002_history.sql.
HISTORY_PREFIX = "history/transactions"
CUSTOMER_INFO_PREFIX = "history/customer_info"


class SeedError(Exception):
    """A step failed; the message names it."""


@dataclass
class Seeded:
    world: Any = None
    history: Any = None
    history_rows: int = 0
    history_frauds: int = 0
    model_name: str = ""
    show_model: list[tuple[str, str]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def data_api() -> Any:
    """fraud_common's Data API client, configured from the functions' settings like the Lambdas."""
    from fraud_common.dataapi import DataApi
    from fraud_common.settings import WarehouseSettings

    return DataApi(WarehouseSettings.from_env())


def invoke(stack: Any, dir_name: str, event: dict[str, Any]) -> Any:
    """Invoke a handler in-process; its failure becomes one line naming the function."""
    try:
        return stack.invoke(dir_name, event)
    except Exception as exc:
        raise SeedError(f"{dir_name} failed: {type(exc).__name__}: {exc}") from exc


def function_event(stack: Any, dir_name: str, action: str) -> dict[str, Any]:
    """The events/ file for this action of the function (e.g. train_model_start.json)."""
    from local.scheduler import event_file

    path = event_file(stack.function(dir_name), (action,))
    event = json.loads(path.read_text()) if path else {}
    event["action"] = action
    return event


def load_history(
    stack: Any,
    *,
    customers: int,
    days: int,
    seed: int,
    work_dir: Path,
    console: Any,
    terminals: int | None = None,
) -> Seeded:
    """Simulate, export, upload, migrate (COPY); checks that every history row was loaded."""
    from fraud_common.settings import SqlSettings

    from producer.export import export_history, upload_to_s3
    from producer.simulator import WorldConfig, customer_info, simulate_history

    out = Seeded()
    sql = SqlSettings.from_env()
    t0 = time.monotonic()
    config = WorldConfig(
        n_customers=customers, n_terminals=terminals or 2 * customers, n_days=days, seed=seed
    )
    with console.status(f"simulating {days} days of {customers:,} customers..."):
        out.world, out.history = simulate_history(config)
        info = customer_info(out.world)
    out.history_rows, out.history_frauds = len(out.history), int(out.history.TX_FRAUD.sum())
    out.timings_s["simulate"] = time.monotonic() - t0
    console.print(
        f"history: {out.history_rows:,} transactions, {out.history_frauds:,} frauds "
        f"({out.history_frauds / max(out.history_rows, 1):.2%}) in {out.timings_s['simulate']:.1f} s"
    )
    t0 = time.monotonic()
    with console.status("exporting the history and uploading it to S3..."):
        paths = export_history(out.history, info, work_dir / "history", gzip=True)
        upload_to_s3([paths["transactions"]], f"s3://{sql.s3_bucket}/{HISTORY_PREFIX}")
        upload_to_s3([paths["customer_info"]], f"s3://{sql.s3_bucket}/{CUSTOMER_INFO_PREFIX}")
    out.timings_s["export_upload"] = time.monotonic() - t0
    t0 = time.monotonic()
    with console.status(
        "applying the SQL migrations (apply_sql handler: streams, COPY, features, tables)..."
    ):
        try:
            stack.apply_migrations()
        except Exception as exc:
            raise SeedError(f"migrations: {exc}") from exc
    out.timings_s["migrations_copy"] = time.monotonic() - t0
    loaded = int(data_api().query("SELECT count(*) AS n FROM cust_payment_tx_history")[0]["n"])
    if loaded != out.history_rows:
        raise SeedError(f"COPY loaded {loaded:,} history rows, expected {out.history_rows:,}")
    console.print(
        f"migrations applied, history loaded by COPY ({loaded:,} rows) in {out.timings_s['migrations_copy']:.1f} s"
    )
    return out


def train_first_model(stack: Any, seeded: Seeded, console: Any, poll_s: float = 1.0) -> None:
    """train_model `start`, wait for READY with progress, train_model `check` promotes it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    t0 = time.monotonic()
    outcome = invoke(stack, "train_model", function_event(stack, "train_model", "start"))
    model = outcome.get("started") if isinstance(outcome, dict) else None
    if not model:
        raise SeedError(f"train_model did not start a model version: {outcome}")
    seeded.model_name = model
    api = data_api()
    state = "TRAINING"
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"CREATE MODEL {model}: TRAINING", total=None)
        while state not in ("READY", "FAILED"):
            time.sleep(poll_s)
            state = dict(show_model(api, model)).get("Model State", "TRAINING").upper()
            bar.update(task, description=f"CREATE MODEL {model}: {state}")
    seeded.show_model = show_model(api, model)
    if state == "FAILED":
        raise SeedError(f"model {model} failed: {dict(seeded.show_model).get('Failure Reason', 'no reason')}")
    outcome = invoke(stack, "train_model", function_event(stack, "train_model", "check"))
    if model not in (outcome.get("promoted") or []):
        raise SeedError(f"model {model} is READY but train_model did not promote it: {outcome}")
    seeded.timings_s["train"] = time.monotonic() - t0
    table = Table(title=f"SHOW MODEL {model}", show_header=False)
    for key, value in seeded.show_model:
        table.add_row(key, value if len(value) < 100 else value[:97] + "...")
    console.print(table)
    console.print(f"model trained and promoted in {seeded.timings_s['train']:.1f} s")


def show_model(api: Any, model: str) -> list[tuple[str, str]]:
    """SHOW MODEL's key/value rows. `model` comes from train_model, which checks it is an identifier."""
    rows = api.query(f"SHOW MODEL {model}")
    return [
        (str(k).strip(), "" if v is None else str(v).strip()) for k, v in (list(r.values())[:2] for r in rows)
    ]
