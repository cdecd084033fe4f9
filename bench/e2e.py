"""The whole local pipeline at 500, 1,000 and 2,000 transactions/s, against the stream's raw put rate.

    .venv/bin/python bench/e2e.py [--rates 500,1000,2000] [--seconds 30] [--customers 5000 --days 183]
                                  [--pollers N] [--aws-schedule]

One stack, one history and one model (the simulator's default world, as the demo and the model's
targets use: its alerts are ~0.7 % of transactions; --customers 1000 --days 30 is a quicker world
whose fixed daily compromises make ~3.5 % of transactions alerts, five times the alert traffic);
then for each rate a live run of --seconds (the same world continued), drained before the next.
Per rate it prints: the producer's achieved rate, the rates at which the warehouse ingested and
scored that load (count / time until caught up), the ingestion lag while streaming (p50, max), the
alert latency (producer timestamp -> alert handed to act_on_alert, p50 and p99), split into stages
(to stream, to scored, to published, to consumer), the drain time, and CPU by thread and process.
The stack runs as `python -m local up` does (score_and_alert back to back, 4 act_on_alert pollers);
--aws-schedule and --pollers 1 measure the AWS-like schedule and one poller instead. The ceiling is the raw PutRecords rate of a stream with the same shards on
the same moto server, measured in the same run.
Targets (issue 7): sustain 2,000 tx/s with bounded lag; alert latency p99 under 2 s at 1,000 tx/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BENCH_ENV = {
    "POLL_INTERVAL_SECONDS": "0.1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def raw_put_rate(world: object, records: int) -> float:
    """PutRecords as fast as the writer goes, onto a fresh stream shaped like the transaction stream."""
    import boto3
    from fraud_common.settings import SqlSettings

    from producer.kinesis import KinesisWriter
    from producer.simulator import LiveSimulator
    from producer.stream import transaction_record

    kinesis = boto3.client("kinesis")
    shards = kinesis.describe_stream_summary(StreamName=SqlSettings.from_env().tx_stream)
    name = "bench-raw-put"
    kinesis.create_stream(StreamName=name, ShardCount=shards["StreamDescriptionSummary"]["OpenShardCount"])
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    # far past the live runs, so its ids never meet theirs
    txs = LiveSimulator(world, start_day=10_000, first_transaction_id=10**12)  # type: ignore[arg-type]
    payloads = []
    for tx in txs:
        payloads.append((transaction_record(tx, time.time_ns() // 1_000_000), str(tx.CUSTOMER_ID)))
        if len(payloads) >= records:
            break
    writer = KinesisWriter(name)
    t0 = time.monotonic()
    for data, key in payloads:
        writer.put(data, key)
    writer.flush()
    elapsed = time.monotonic() - t0
    if writer.stats.failed:
        raise RuntimeError(f"raw put: {writer.stats.failed} records failed")
    return writer.stats.sent / elapsed


def statement_timings(store: object, since: float) -> dict[str, list[float]]:
    """Per Data API statement name (the functions name theirs, e.g. "query score_new_transactions"):
    [count, queue wait p50, run time p50, run time p99] in seconds, from the emulator's statement store,
    for the statements submitted since `since` (epoch s). Queue wait = submitted -> a worker started it."""
    from collections import defaultdict

    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in store.all():  # type: ignore[attr-defined]
        if s.created_at < since or s.status != "FINISHED":
            continue
        name = s.statement_name or " ".join(s.query_string.split()[:3])[:28]
        run_s = s.duration_ns / 1e9
        groups[name].append((max(0.0, s.updated_at - s.created_at - run_s), run_s))
    out = {}
    for name, values in groups.items():
        waits, runs = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        out[name] = [len(values), *np.percentile(waits, [50]), *np.percentile(runs, [50, 99])]
    return out


def refresh_timings(engine: object, since: float) -> dict[str, list[float]]:
    """Per streaming MV: [refreshes, run time p50, p99] (s) from SYS_MV_REFRESH_HISTORY since `since`."""
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(since, UTC).replace(tzinfo=None)
    con = engine.cursor()  # type: ignore[attr-defined]
    try:
        rows = con.execute(
            "SELECT mv_name, count(*), quantile_cont(duration, 0.5) / 1e6, quantile_cont(duration, 0.99) / 1e6 "
            "FROM redshift_sys.sys_mv_refresh_history WHERE start_time >= ? GROUP BY 1 ORDER BY 1",
            [start],
        ).fetchall()
    finally:
        con.close()
    return {row[0]: list(row[1:]) for row in rows}


def cpu_by_thread(moto_pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each thread of this process (by thread name, numbered pools summed) and of
    the moto child processes (name -> pid), from /proc (Linux); empty elsewhere. DuckDB's own worker threads have no
    Python name: they count as "native (DuckDB)"."""
    import re
    import threading

    tick = os.sysconf("SC_CLK_TCK")

    def cpu(stat_path: str) -> float:
        fields = Path(stat_path).read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    names = {t.native_id: re.sub(r"[-_]\d+$|-\d+ \(.*\)$", "", t.name) for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return {}
    for task in tasks:
        name = names.get(int(task), "native (DuckDB)")
        try:
            out[name] = out.get(name, 0.0) + cpu(f"/proc/self/task/{task}/stat")
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    for name, pid in moto_pids.items():
        try:
            out[name] = cpu(f"/proc/{pid}/stat")
        except (OSError, ValueError):
            pass
    return out


class GcPauses:
    """Python's garbage-collector pauses in this process (every thread stops while one runs), by
    generation: [count, total s, max s], from gc.callbacks."""

    def __init__(self) -> None:
        import gc

        self._started = 0.0
        self.pauses: dict[int, list[float]] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.setdefault(info["generation"], []).append(time.perf_counter() - self._started)

    def take(self) -> dict[int, list[float]]:
        """The pauses since the last take: generation -> [count, total s, max s]."""
        taken, self.pauses = self.pauses, {}
        return {gen: [len(p), sum(p), max(p)] for gen, p in sorted(taken.items())}


class WalWatch:
    """DuckDB checkpoints seen from outside: the warehouse's write-ahead log shrinks when one runs
    (sampled every 20 ms). Counts them and the WAL size reached before each."""

    def __init__(self, wal: Path) -> None:
        import threading

        self.wal = wal
        self.checkpoints: list[float] = []  # WAL bytes before each
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="bench-wal-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        last = 0
        while not self._stop.wait(0.02):
            try:
                size = self.wal.stat().st_size
            except OSError:
                size = 0
            if size < last:
                self.checkpoints.append(last)
            last = size

    def take(self) -> list[float]:
        taken, self.checkpoints = self.checkpoints, []
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def caught_up_rate(history: list[tuple[float, int, int, int]], index: int, produced: int) -> float | None:
    """count / seconds until the warehouse count (ingested: 2, scored: 3) reached what was produced."""
    for t, _, *counts in history:
        if counts[index - 2] >= produced and t > 0:
            return produced / t
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default="500,1000,2000", help="comma-separated tx/s (default 500,1000,2000)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="live seconds per rate (default 30)")
    parser.add_argument("--customers", type=int, default=5000, help="world size (default: the simulator's)")
    parser.add_argument("--days", type=int, default=183, help="days of history (default: the simulator's)")
    parser.add_argument("--raw-records", type=int, default=20_000, help="records for the raw put rate")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench-e2e")
    parser.add_argument(
        "--pollers", type=int, default=None, help="concurrent act_on_alert batches (default: the stack's)"
    )
    parser.add_argument(
        "--aws-schedule",
        action="store_true",
        help="score_and_alert on its template schedule, as on AWS (default: back to back, as the stack)",
    )
    parser.add_argument(
        "--poll-interval",
        default=BENCH_ENV["POLL_INTERVAL_SECONDS"],
        help=f"score_and_alert's pause between cycles, s (default {BENCH_ENV['POLL_INTERVAL_SECONDS']})",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    from rich.console import Console

    from local.live import AlertDispatch, run_live
    from local.monitor import STAGES
    from local.seed import load_history, train_first_model
    from local.stack import Stack, StackOptions
    from producer.simulator import LiveSimulator

    console = Console()
    options = StackOptions(
        data_dir=args.out / "data",
        fresh=True,
        scheduler=False,
        apply_migrations=False,
        env_overrides={**BENCH_ENV, "POLL_INTERVAL_SECONDS": str(args.poll_interval)},
    )
    rows = []
    with Stack(options) as stack:
        seeded = load_history(
            stack, customers=args.customers, days=args.days, seed=42, work_dir=args.out, console=console
        )
        train_first_model(stack, seeded, console)
        with console.status(f"raw put rate ({args.raw_records:,} records)..."):
            ceiling = raw_put_rate(seeded.world, args.raw_records)
        console.print(f"raw PutRecords rate of the local stream: {ceiling:,.0f} records/s")
        dispatch = AlertDispatch()
        scheduling: dict[str, object] = {"back_to_back": ()} if args.aws_schedule else {}
        if args.pollers:
            scheduling["queue_pollers"] = args.pollers
        stack.start_scheduler(run_now=("score_and_alert",), on_sqs_batch=dispatch.on_alerts, **scheduling)
        live = LiveSimulator(seeded.world, after=seeded.history)
        moto_pids = {
            f"moto {group} (child process)": moto.pid for group, moto in stack.motos.items() if moto.pid
        }
        gc_pauses = GcPauses()
        wal = WalWatch(Path(str(stack.engine.path) + ".wal"))
        for rate in rates:
            since = time.time()
            gc_pauses.take()
            wal.take()
            cpu_before = cpu_by_thread(moto_pids)
            with console.status(f"{rate:,.0f} tx/s for {args.seconds:g} s, then drain..."):
                run = run_live(
                    live, dispatch, rate=rate, duration_s=args.seconds, drain_timeout_s=args.drain_timeout
                )
            m = run.monitor
            produced = run.stats.transactions
            p50, p99 = m.latency_percentiles()
            lag = np.array(run.lag_samples_s) if run.lag_samples_s else np.array([np.nan])
            rows.append(
                {
                    "rate": rate,
                    "produced_rate": run.stats.rate,
                    "ingest_rate": caught_up_rate(m.history, 2, produced),
                    "score_rate": caught_up_rate(m.history, 3, produced),
                    "lag_p50": float(np.nanpercentile(lag, 50)),
                    "lag_max": float(np.nanmax(lag)),
                    "p50": p50,
                    "p99": p99,
                    "alerts": len(m.first_deliveries()),
                    "drain": run.total_s - run.stream_s,
                    "drained": run.drained,
                    "stages": m.stage_percentiles(),
                    "statements": statement_timings(stack.redshift.store, since),
                    "refreshes": refresh_timings(stack.engine, since),
                    "gc": gc_pauses.take(),
                    "checkpoints": wal.take(),
                    "cpu": {
                        **{
                            name: (seconds - cpu_before.get(name, 0.0)) / run.total_s
                            for name, seconds in cpu_by_thread(moto_pids).items()
                        },
                        "producer (child process)": run.producer_cpu_s / run.total_s,
                    },
                }
            )
            console.print(f"{rate:,.0f} tx/s done: {m.one_line()}")
        stack.scheduler.stop()
        wal.stop()

    def fmt(value: float | None, spec: str = ",.0f") -> str:
        return "n/a" if value is None or value != value else format(value, spec)

    header = (
        f"{'target':>7} {'produced':>9} {'x target':>8} {'x raw put':>9} {'ingested':>9} {'scored':>8} "
        f"{'lag p50/max s':>14} {'alert p50/p99 s':>16} {'alerts':>7} {'drain s':>8} {'drained':>8}"
    )
    lines = [f"pipeline on the local stack; raw put ceiling {ceiling:,.0f} records/s (same run)", header]
    for r in rows:
        lines.append(
            f"{fmt(r['rate']):>7} {fmt(r['produced_rate']):>9} {fmt(r['produced_rate'] / r['rate'], '.2f'):>8} "
            f"{fmt(r['produced_rate'] / ceiling, '.2f'):>9} {fmt(r['ingest_rate']):>9} {fmt(r['score_rate']):>8} "
            f"{fmt(r['lag_p50'], '.1f') + ' / ' + fmt(r['lag_max'], '.1f'):>14} "
            f"{fmt(r['p50'], '.2f') + ' / ' + fmt(r['p99'], '.2f'):>16} {fmt(r['alerts']):>7} "
            f"{fmt(r['drain'], '.1f'):>8} {'yes' if r['drained'] else 'NO':>8}"
        )
    lines.append(
        "(tx/s; ingested/scored = count / seconds until the warehouse held it all; lag while streaming)"
    )
    lines.append(
        "alert latency by stage, p50 / p99 s (from the timestamps each alert carries; scored_at is the"
    )
    lines.append("scoring statement's start):")
    lines.append(f"{'target':>7}  " + "  ".join(f"{stage:>14}" for stage in STAGES))
    for r in rows:
        cells = [r["stages"].get(stage) for stage in STAGES]
        text = [f"{cell[0]:.2f} / {cell[1]:.2f}" if cell else "n/a" for cell in cells]
        lines.append(f"{fmt(r['rate']):>7}  " + "  ".join(f"{t:>14}" for t in text))
    lines.append("warehouse work per rate (s): Data API statements (count, queue wait p50, run p50 / p99)")
    lines.append("and streaming MV refreshes (count, run p50 / p99):")
    for r in rows:
        lines.append(f"{fmt(r['rate']):>7}")
        for name, (count, wait, p50, p99) in sorted(
            r["statements"].items(), key=lambda kv: -kv[1][0] * kv[1][2]
        ):
            lines.append(f"{'':>9}{name:<36} {count:>6,.0f} {wait:>7.3f} {p50:>7.3f} / {p99:.3f}")
        for name, (count, p50, p99) in r["refreshes"].items():
            lines.append(f"{'':>9}{'REFRESH ' + name:<36} {count:>6,.0f} {'':>7} {p50:>7.3f} / {p99:.3f}")
    lines.append(
        "Python GC pauses in the stack process (all threads wait): generation count / total s / max s:"
    )
    for r in rows:
        text = ", ".join(f"gen{g} {n} / {total:.2f} / {top:.3f}" for g, (n, total, top) in r["gc"].items())
        lines.append(f"{fmt(r['rate']):>7}  {text or 'none'}")
    lines.append("DuckDB checkpoints (the WAL shrank): count, WAL MB before each:")
    for r in rows:
        sizes = ", ".join(f"{size / 1e6:.0f}" for size in r["checkpoints"])
        lines.append(f"{fmt(r['rate']):>7}  {len(r['checkpoints'])}: {sizes}")
    lines.append("CPU by thread, in cores (CPU s / wall s of the run incl. drain; top 12):")
    for r in rows:
        top = sorted(r["cpu"].items(), key=lambda kv: -kv[1])[:12]
        total = sum(r["cpu"].values())
        lines.append(f"{fmt(r['rate']):>7}  total {total:.2f}: " + ", ".join(f"{n} {c:.2f}" for n, c in top))
    print("\n".join(lines), flush=True)
    return 0 if all(r["drained"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
