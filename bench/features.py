"""Benchmark: the point-in-time features of a whole history, the project's SQL vs pandas.

Both sides compute the handbook's 14 features of every transaction of the same history, in the same
run: the project's SQL (`tx_features` through the local engine, as `python -m local features`
does) and a straightforward pandas implementation (per customer / per terminal time-based rolling
windows, the handbook's approach). Prints both times and the ratio, and checks the two agree.

    .venv/bin/python bench/features.py                 # the simulator's default world (~1.79M rows)
    .venv/bin/python bench/features.py --history FILE  # any raw history CSV
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.features import (
    HANDBOOK_FEATURES,
    compute_history_features,
    load_history,
    prepare_history_warehouse,
)
from local.redshift.engine import Engine


def default_history(directory: Path) -> Path:
    from producer.export import export_history
    from producer.simulator import WorldConfig, customer_info, simulate_history

    world, history = simulate_history(WorldConfig())
    return export_history(history, customer_info(world), directory)["transactions"]


def pandas_features(raw: pd.DataFrame) -> pd.DataFrame:
    """The handbook's feature code, vectorised per group with pandas time-based rolling windows."""
    df = raw.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).reset_index(drop=True)
    df["TX_DURING_WEEKEND"] = (df.TX_DATETIME.dt.day_of_week >= 5).astype(int)
    df["TX_DURING_NIGHT"] = (df.TX_DATETIME.dt.hour <= 6).astype(int)
    for days in (1, 7, 30):
        rolled = (
            df.set_index("TX_DATETIME")
            .groupby("CUSTOMER_ID", sort=True)["TX_AMOUNT"]
            .rolling(f"{days}D")
            .agg(["count", "sum"])
        )
        rolled.index = df.sort_values("CUSTOMER_ID", kind="stable").index
        rolled = rolled.sort_index()
        df[f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"] = rolled["count"].to_numpy()
        df[f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"] = (rolled["sum"] / rolled["count"]).to_numpy()
    delay = 7
    by_terminal = df.set_index("TX_DATETIME").groupby("TERMINAL_ID", sort=True)["TX_FRAUD"]
    order = df.sort_values("TERMINAL_ID", kind="stable").index

    def rolled_terminal(days: int) -> pd.DataFrame:
        out = by_terminal.rolling(f"{days}D").agg(["count", "sum"])
        out.index = order
        return out.sort_index()

    # (t - delay - n days, t - delay] = rolling (t - delay - n, t] minus rolling (t - delay, t], as the handbook
    delayed = rolled_terminal(delay)
    for days in (1, 7, 30):
        window = rolled_terminal(delay + days)
        count = (window["count"] - delayed["count"]).to_numpy()
        frauds = (window["sum"] - delayed["sum"]).to_numpy()
        df[f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"] = count
        df[f"TERMINAL_ID_RISK_{days}DAY_WINDOW"] = np.where(count > 0, frauds / np.maximum(count, 1), 0.0)
    return df


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, help="raw history CSV (default: simulate the default world)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        history = args.history or default_history(Path(tmp))
        engine = Engine(":memory:", auto_refresh_interval=None)
        prepare_history_warehouse(engine)
        rows = load_history(engine, history)
        started = time.perf_counter()
        compute_history_features(engine)
        sql_s = time.perf_counter() - started
        con = engine.cursor()
        ours = con.execute(
            "SELECT transaction_id, "
            + ", ".join(c.lower() for c in HANDBOOK_FEATURES)
            + " FROM history_features"
        ).df()
        con.close()
        engine.close()

        raw = pd.read_csv(history, parse_dates=["TX_DATETIME"])
        started = time.perf_counter()
        theirs = pandas_features(raw)
        pandas_s = time.perf_counter() - started

    ours.columns = ["TRANSACTION_ID", *HANDBOOK_FEATURES]
    merged = theirs.merge(ours, on="TRANSACTION_ID", suffixes=("_pd", ""))
    worst = max(float((merged[c] - merged[f"{c}_pd"]).abs().max()) for c in HANDBOOK_FEATURES)
    print(f"history: {rows:,} transactions")
    print(f"project SQL (local engine): {sql_s:8.2f} s")
    print(f"pandas rolling baseline:    {pandas_s:8.2f} s")
    print(f"ratio pandas / SQL:         {pandas_s / sql_s:8.1f}x   (target: >= 20x, SQL under 10 s)")
    print(f"largest difference between the two on any feature: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
