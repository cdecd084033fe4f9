"""Benchmark: the vectorised simulator vs a straightforward per-customer, per-day Python loop.

Run: .venv/bin/python bench/simulator.py [--baseline-customers 500] [--baseline-terminals 1000]

1. The loop baseline (the handbook's algorithm written the obvious way: a Python loop over customers
   and days drawing one transaction at a time, then per-day fraud loops) runs on a small world and
   its time per transaction is scaled to the default world's transaction count.
2. The vectorised simulator runs on the same small world (a like-for-like ratio) and on the default
   world (5,000 customers, 10,000 terminals, 183 days), with its time and peak memory.
Targets (issue 2): default world < 10 s, >= 20x faster than the loop, < 1.5 GB peak memory.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from producer.simulator import WorldConfig, simulate_history


def loop_baseline(config: WorldConfig) -> tuple[int, int]:
    """The same algorithm, one customer-day and one transaction at a time. Returns (rows, frauds)."""
    rng = np.random.default_rng(config.seed)
    customers = [
        (rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(5, 100), rng.uniform(0, 4))
        for _ in range(config.n_customers)
    ]
    terminals = np.array([(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(config.n_terminals)])
    available = [
        list(np.nonzero(np.sqrt(((terminals - (x, y)) ** 2).sum(axis=1)) < config.radius)[0])
        for x, y, _, _ in customers
    ]
    choice = random.Random(config.seed).choice
    rows = []  # [seconds, day, customer, terminal, amount]
    for customer, (_, _, mean_amount, mean_nb_tx) in enumerate(customers):
        for day in range(config.n_days):
            for _ in range(rng.poisson(mean_nb_tx)):
                time_of_day = int(rng.normal(43_200, 20_000))
                if 0 < time_of_day < 86_400 and available[customer]:
                    amount = rng.normal(mean_amount, mean_amount / 2)
                    if amount < 0:
                        amount = rng.uniform(0, 2 * mean_amount)
                    rows.append(
                        [
                            time_of_day + day * 86_400,
                            day,
                            customer,
                            choice(available[customer]),
                            round(amount, 2),
                        ]
                    )
    rows.sort(key=lambda row: row[0])
    scenario = [1 if row[4] > 220 else 0 for row in rows]
    by_day: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_day.setdefault(row[1], []).append(index)
    for day in range(config.n_days):
        bad_terminals = set(rng.choice(config.n_terminals, 2, replace=False).tolist())
        bad_customers = set(rng.choice(config.n_customers, 3, replace=False).tolist())
        for later in range(day, min(day + 28, config.n_days)):
            for index in by_day.get(later, []):
                if rows[index][3] in bad_terminals:
                    scenario[index] = 2
        for later in range(day, min(day + 14, config.n_days)):
            for index in by_day.get(later, []):
                if rows[index][2] in bad_customers and rng.random() < 1 / 3:
                    rows[index][4] = round(rows[index][4] * 5, 2)
                    scenario[index] = 3
    return len(rows), sum(1 for s in scenario if s)


def timed(function, *args):
    gc.collect()
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-customers", type=int, default=500)
    parser.add_argument("--baseline-terminals", type=int, default=1000)
    args = parser.parse_args()

    full = WorldConfig()
    small = WorldConfig(n_customers=args.baseline_customers, n_terminals=args.baseline_terminals)

    # Default world first, so the process's peak RSS is the vectorised run's (plus the interpreter).
    (_, history), vector_full_s = timed(simulate_history, full)
    rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()  # a second, untimed run: tracing slows allocations down
    simulate_history(full)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_rows, full_frauds = len(history), int(history.TX_FRAUD.sum())
    del history

    (_, small_history), vector_small_s = timed(simulate_history, small)
    (loop_rows, loop_frauds), loop_small_s = timed(loop_baseline, small)
    loop_full_s = loop_small_s / loop_rows * full_rows  # scaled by transaction count

    print(
        f"default world: {full_rows:,} transactions, {full_frauds:,} frauds ({full_frauds / full_rows:.2%})"
    )
    print(f"{'':34}{'small world':>14}{'default world':>16}")
    print(f"{'rows':34}{len(small_history):>14,}{full_rows:>16,}")
    print(f"{'loop baseline (s)':34}{loop_small_s:>14.2f}{loop_full_s:>15.1f}*")
    print(f"{'vectorised (s)':34}{vector_small_s:>14.3f}{vector_full_s:>16.2f}")
    print(
        f"{'speed-up vs loop (x)':34}{loop_small_s / vector_small_s:>14.0f}{loop_full_s / vector_full_s:>16.0f}"
    )
    print(
        f"  * scaled from the small world ({loop_rows:,} rows, {loop_frauds:,} frauds) by transaction count"
    )
    print(
        f"vectorised peak memory: {traced_peak / 2**20:,.0f} MiB traced (numpy + Python), {rss_peak_mb:,.0f} MiB process RSS"
    )
    ok = vector_full_s < 10 and loop_full_s / vector_full_s >= 20 and rss_peak_mb < 1536
    print(f"targets (< 10 s, >= 20x, < 1.5 GB): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
