"""Redshift ML emulation, training: CREATE MODEL (AUTO OFF, XGBOOST, NUM_ROUND 100) on four months of the
default simulated world with the 15 handbook features, vs xgboost.train on the same arrays in the same run.

The training set is the project's own: the simulator's default world (`WorldConfig()`, first --days days),
featurised by the warehouse SQL (`local.features`: migrations 002-004 + queries/featurise_history.sql)
on a local engine. Building it takes minutes, so it is cached as Parquet (--features-file); the cache is
not part of what is timed. MAX_CELLS is raised above rows x columns so that nothing is sampled.

Timed, emulator: from CREATE MODEL until SHOW MODEL says READY (query + Arrow fetch + checks + split +
DMatrix + 100 rounds + TreeSHAP explanation + persistence). Baseline: xgboost.train with the same
parameters, split and evaluation sets on numpy arrays already in memory.

    .venv/bin/python bench/ml_training.py [--days 122] [--num-round 100] [--features-file PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

from local.redshift.engine import Engine
from local.redshift.ml import training

FEATURES = [
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    "customer_id_nb_tx_1day_window",
    "customer_id_avg_amount_1day_window",
    "customer_id_nb_tx_7day_window",
    "customer_id_avg_amount_7day_window",
    "customer_id_nb_tx_30day_window",
    "customer_id_avg_amount_30day_window",
    "terminal_id_nb_tx_1day_window",
    "terminal_id_risk_1day_window",
    "terminal_id_nb_tx_7day_window",
    "terminal_id_risk_7day_window",
    "terminal_id_nb_tx_30day_window",
    "terminal_id_risk_30day_window",
]
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "fraud-bench-handbook-features-{days}d.parquet"


def handbook_features(days: int, cache: Path | None = None) -> pa.Table:
    """The 15 handbook features + tx_fraud of the default world's first `days` days (cached)."""
    cache = cache or Path(str(DEFAULT_CACHE).format(days=days))
    if cache.exists():
        return pq.read_table(cache)
    from local import features as project_features
    from producer.export import write_transactions_csv
    from producer.simulator import WorldConfig, simulate_history

    started = time.perf_counter()
    _, history = simulate_history(WorldConfig(n_days=days))
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        csv = write_transactions_csv(history, Path(tmp) / "history.csv")
        engine = Engine(Path(tmp) / "features.duckdb", auto_refresh_interval=None)
        try:
            project_features.prepare_history_warehouse(engine)
            project_features.load_history(engine, csv)
            project_features.compute_history_features(engine)
            con = engine.cursor()
            try:
                table = con.sql(
                    f"SELECT {', '.join(FEATURES)}, tx_fraud FROM history_features ORDER BY transaction_id"
                ).to_arrow_table()
            finally:
                con.close()
        finally:
            engine.close()
    pq.write_table(table, cache)
    print(
        f"built {table.num_rows:,} feature rows in {time.perf_counter() - started:.0f} s (cached in {cache})"
    )
    return table


def load_table(engine: Engine, name: str, table: pa.Table) -> None:
    con = engine.cursor()
    try:
        con.register("incoming", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming")
        con.unregister("incoming")
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=122, help="days of the default world (122 = four months)")
    parser.add_argument("--num-round", type=int, default=100)
    parser.add_argument("--features-file", type=Path, default=None, help="Parquet cache of the feature rows")
    args = parser.parse_args()

    table = handbook_features(args.days, args.features_file)
    rows, columns = table.num_rows, table.num_columns
    frauds = int(np.asarray(table.column("tx_fraud")).sum())
    print(f"training set: {rows:,} rows x {len(FEATURES)} features, {frauds:,} frauds ({frauds / rows:.2%})")

    with tempfile.TemporaryDirectory(prefix="bench-ml-training-") as tmp:
        engine = Engine(Path(tmp) / "redshift.duckdb", auto_refresh_interval=None)
        try:
            load_table(engine, "training_set", table)
            create = (
                f"CREATE MODEL bench_model FROM (SELECT {', '.join(FEATURES)}, tx_fraud FROM training_set) "
                "TARGET tx_fraud FUNCTION fn_bench IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST "
                f"OBJECTIVE 'binary:logistic' PREPROCESSORS 'none' "
                f"HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '{args.num_round}') "
                f"SETTINGS (S3_BUCKET 'bench', MAX_CELLS {rows * columns + 1}, MAX_RUNTIME 3600)"
            )
            started, cpu_started = time.perf_counter(), time.process_time()
            engine.execute(create)
            returned = time.perf_counter() - started
            state = engine.ml.wait("bench_model", timeout=3600)
            emulator_seconds = time.perf_counter() - started
            emulator_cpu = time.process_time() - cpu_started
            show = dict(engine.execute("SHOW MODEL bench_model").rows)
        finally:
            engine.close()
    assert state == "READY", show.get("Failure Reason")
    assert show["Training Rows"] == f"{rows} of {rows}", show["Training Rows"]  # nothing sampled

    # Baseline: the same split, data structure, parameters and evaluation on arrays already in memory.
    x = training.features_matrix([table.column(name) for name in FEATURES])
    y = np.asarray(table.column("tx_fraud"), dtype=np.float64)
    train_idx, valid_idx = training._split(rows)
    started, cpu_started = time.perf_counter(), time.process_time()
    dtrain = xgb.QuantileDMatrix(x[train_idx], label=y[train_idx])
    dvalid = xgb.QuantileDMatrix(x[valid_idx], label=y[valid_idx], ref=dtrain)
    xgb.train(
        {"objective": "binary:logistic", "seed": training.SEED, "verbosity": 0},
        dtrain,
        num_boost_round=args.num_round,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        verbose_eval=False,
    )
    direct_seconds = time.perf_counter() - started
    direct_cpu = time.process_time() - cpu_started

    print(f"CREATE MODEL returned after {returned:.2f} s (query, Arrow fetch, checks); model READY after:")
    print(
        f"  emulator (CREATE MODEL -> READY):  {emulator_seconds:8.2f} s {rows / emulator_seconds:10,.0f} rows/s"
        f"  ({emulator_cpu:.1f} CPU s in this process)"
    )
    print(
        f"  xgboost.train on numpy (baseline): {direct_seconds:8.2f} s {rows / direct_seconds:10,.0f} rows/s"
        f"  ({direct_cpu:.1f} CPU s)"
    )
    print(
        f"  ratio emulator / baseline: {emulator_seconds / direct_seconds:.2f}x   (target: emulator < 60 s)"
    )
    print(
        f"  SHOW MODEL: Training Time {show['Training Time']}, validation:logloss {show['validation:logloss']}"
    )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"  load average at the end: {load} on {os.cpu_count()} cores (other processes share the CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
