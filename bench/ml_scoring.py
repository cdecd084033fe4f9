"""Redshift ML emulation, scoring: the SQL prediction function over 1M rows vs the same model's own
`inplace_predict` on the same numpy arrays, in the same run.

The model is CREATE MODEL ... AUTO OFF XGBOOST OBJECTIVE 'reg:logistic' NUM_ROUND 100 (the product's
score function) on the handbook feature rows of bench/ml_training.py (same Parquet cache; built on the
first run). The scored table holds --rows rows (the feature rows, repeated if there are fewer).

Timed (best of --repeat): SQL, `SELECT sum(fn(15 columns)) FROM score_set` through Engine.execute (DuckDB
scans the table and calls the Arrow UDF once per 2048-row vector); direct, `booster.inplace_predict(X)`
on the float32 matrix of the same rows, already in memory. Also the direct call per 2048-row chunk,
which is the work the UDF does minus DuckDB, to show where the difference goes.

    .venv/bin/python bench/ml_scoring.py [--rows 1000000] [--days 122] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from ml_training import FEATURES, handbook_features, load_table

from local.redshift.engine import Engine
from local.redshift.ml import training


def best_of(repeat: int, run: callable) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - started)
    return best, value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=122)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--features-file", type=Path, default=None)
    args = parser.parse_args()

    table = handbook_features(args.days, args.features_file)
    repeats = -(-args.rows // table.num_rows)
    score_set = pa.concat_tables([table] * repeats).slice(0, args.rows)
    columns = ", ".join(FEATURES)

    with tempfile.TemporaryDirectory(prefix="bench-ml-scoring-") as tmp:
        engine = Engine(Path(tmp) / "redshift.duckdb", auto_refresh_interval=None)
        try:
            load_table(engine, "training_set", table)
            load_table(engine, "score_set", score_set)
            engine.execute(
                f"CREATE MODEL bench_score FROM (SELECT {columns}, tx_fraud FROM training_set) TARGET tx_fraud "
                "FUNCTION fn_score IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'reg:logistic' "
                "PREPROCESSORS 'none' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '100') "
                "SETTINGS (S3_BUCKET 'bench', MAX_RUNTIME 3600)"
            )
            assert engine.ml.wait("bench_score", timeout=3600) == "READY"
            booster = engine.ml.predictor("bench_score").booster

            sql_seconds, result = best_of(
                args.repeat, lambda: engine.execute(f"SELECT sum(fn_score({columns})) FROM score_set")
            )
            sql_sum = result.rows[0][0]

            con = engine.cursor()
            try:
                arrow = con.sql(f"SELECT {columns} FROM score_set").to_arrow_table()
            finally:
                con.close()
            x = training.features_matrix([arrow.column(name) for name in FEATURES])
            direct_seconds, scores = best_of(args.repeat, lambda: booster.inplace_predict(x))
            chunked_seconds, _ = best_of(
                args.repeat,
                lambda: [booster.inplace_predict(x[i : i + 2048]) for i in range(0, len(x), 2048)],
            )
        finally:
            engine.close()

    # Same numbers: the SQL function's sum equals the model's own scores summed (float32 model output).
    assert abs(sql_sum - float(np.sum(scores, dtype=np.float64))) <= 1e-6 * len(x), (
        sql_sum,
        float(scores.sum()),
    )
    n = len(x)
    print(f"scored {n:,} rows x {len(FEATURES)} features, model: 100 rounds reg:logistic")
    print(f"  SQL fn_score(...) in DuckDB:          {sql_seconds:6.3f} s  {n / sql_seconds:12,.0f} rows/s")
    print(
        f"  booster.inplace_predict (baseline):   {direct_seconds:6.3f} s  {n / direct_seconds:12,.0f} rows/s"
    )
    print(
        f"  inplace_predict per 2048-row chunk:   {chunked_seconds:6.3f} s  {n / chunked_seconds:12,.0f} rows/s"
    )
    print(f"  throughput ratio SQL / baseline: {direct_seconds / sql_seconds:.2f}   (target >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
