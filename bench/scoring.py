"""Benchmark: one scoring pass (`score_new_transactions`) for 2,000 new stream transactions against
the full history, on the local engine, next to a baseline measured in the same run: featurising the
whole history with the same definition (what a pass would cost if it did not restrict its work).
Each pass is preceded by a run of the feature definition alone on the same rows, to show where the
pass's time goes (features vs model, reasons and insert).

    .venv/bin/python bench/scoring.py                 # the simulator's default world (~1.79M rows)
    .venv/bin/python bench/scoring.py --history FILE  # any raw history CSV

The stream rows are written straight into the stream MV's table (no Kinesis here: ingestion has its
own benchmark); the model is a real CREATE MODEL on the last week of history.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fraud_common.sqlfiles import fill

from local.evaluate import MODEL_INPUTS
from local.features import SQL_DIR, compute_history_features, load_history, prepare_history_warehouse
from local.redshift.engine import Engine
from producer.export import export_simulated_history

PLACEHOLDERS = {"MODEL_FUNCTION": "fn_bench", "MODEL_NAME": "bench_model"}
NEW_TRANSACTIONS = 2_000
# the features of the unscored stream rows, every model input computed (the sum keeps the optimizer from
# pruning any of them)
FEATURES_ONLY = (
    f"SELECT count(*), sum({' + '.join(column.lower() for column in MODEL_INPUTS['all'])})"
    " FROM tx_features WHERE source = 'stream'"
)


def hold_back_newest(engine: Engine, n: int) -> None:
    """The history's newest n transactions leave it: they will arrive by the stream."""
    con = engine.cursor()
    try:
        con.execute(
            f"""CREATE TABLE held_back AS
            SELECT *, ROW_NUMBER() OVER (ORDER BY tx_datetime, transaction_id) AS arrival
            FROM (SELECT * FROM cust_payment_tx_history ORDER BY tx_datetime DESC, transaction_id DESC LIMIT {n})"""
        )
        con.execute(
            "DELETE FROM cust_payment_tx_history WHERE transaction_id IN (SELECT transaction_id FROM held_back)"
        )
    finally:
        con.close()


def refresh_stream(engine: Engine, batch: int) -> None:
    """What a stream MV refresh does: the batch's rows land with their refresh_time."""
    con = engine.cursor()
    try:
        con.execute(
            f"""INSERT INTO cust_payment_tx_stream
            SELECT tx_datetime, customer_id::varchar, 'shardId-000000000000', transaction_id::varchar,
                   TIMESTAMP '2030-01-01' + INTERVAL ({batch}) SECOND, transaction_id, tx_datetime, customer_id,
                   terminal_id, tx_amount, tx_time_seconds, tx_time_days, 0
            FROM held_back WHERE (arrival - 1) // {NEW_TRANSACTIONS} = {batch}"""
        )
    finally:
        con.close()


def train(engine: Engine) -> None:
    engine.execute(
        f"""CREATE MODEL bench_model
        FROM (SELECT {", ".join(column.lower() for column in MODEL_INPUTS["all"])}, tx_fraud
              FROM training_set
              WHERE tx_datetime > DATEADD(day, -7, (SELECT MAX(tx_datetime) FROM training_set)))
        TARGET tx_fraud FUNCTION fn_bench IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST
        OBJECTIVE 'reg:logistic' PREPROCESSORS 'none' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '100')
        SETTINGS (S3_BUCKET 'bench', MAX_CELLS 100000000)"""
    )
    while True:
        state = dict(row[:2] for row in engine.execute("SHOW MODEL bench_model").rows).get("Model State")
        if state in ("READY", "FAILED"):
            break
        time.sleep(0.2)
    if state != "READY":
        raise SystemExit("the benchmark model failed to train")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, help="raw history CSV (default: simulate the default world)")
    parser.add_argument("--passes", type=int, default=5, help="scoring passes to time (each with new rows)")
    args = parser.parse_args()
    score_sql = fill((SQL_DIR / "queries" / "score_new_transactions.sql").read_text(), PLACEHOLDERS)
    with tempfile.TemporaryDirectory() as tmp:
        history = args.history or export_simulated_history(Path(tmp))
        engine = Engine(Path(tmp) / "bench.duckdb", auto_refresh_interval=None)
        prepare_history_warehouse(engine)
        for sql in (SQL_DIR / "migrations" / "005_training_set.sql").read_text().split(";\n"):
            if sql.strip() and "CREATE OR REPLACE VIEW" in sql:
                engine.execute(sql)
        load_history(engine, history)
        hold_back_newest(engine, NEW_TRANSACTIONS * args.passes)
        history_rows = engine.execute("SELECT count(*) FROM cust_payment_tx_history").rows[0][0]

        started = time.perf_counter()
        compute_history_features(engine)  # the baseline: every transaction of the history
        full_s = time.perf_counter() - started
        train(engine)

        timings, cpu, features = [], [], []
        load_before = os.getloadavg()[0]
        for batch in range(args.passes):
            refresh_stream(engine, batch)
            # where the time goes: the feature definition alone on the same new rows, then the whole pass
            started = time.perf_counter()
            engine.execute(FEATURES_ONLY)
            features.append(time.perf_counter() - started)
            started, started_cpu = time.perf_counter(), time.process_time()
            scored = engine.execute(score_sql, {"threshold": "0.5"}).rowcount
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            if scored != NEW_TRANSACTIONS:
                raise SystemExit(f"pass {batch} scored {scored} rows, expected {NEW_TRANSACTIONS}")
        engine.close()

    median = statistics.median(timings)
    print(f"history: {history_rows:,} transactions; each pass scores {NEW_TRANSACTIONS:,} new ones")
    print(
        f"scoring pass (features + model + reasons + insert), median of {len(timings)}: {median * 1000:8.0f} ms"
    )
    print(f"  passes: {', '.join(f'{t * 1000:.0f}' for t in timings)} ms wall")
    print(f"  CPU time (all engine threads): {', '.join(f'{t * 1000:.0f}' for t in cpu)} ms")
    print(
        f"  of which the features (tx_features alone, same rows), median: {statistics.median(features) * 1000:.0f} ms"
    )
    print(
        f"  machine load average before/after the passes: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print(f"baseline, featurising the whole history once:        {full_s * 1000:8.0f} ms")
    print(f"ratio baseline / pass: {full_s / median:.0f}x   (target: pass under 250 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
