"""Streaming ingestion benchmark: MV catch-up rate vs the raw GetRecords read rate of the same stream.

    .venv/bin/python bench/ingestion.py [--records 200000] [--shards 4] [--repeat 2]

Produces N transaction records (the article's JSON, ~0.5% malformed) onto a stream in an in-process
moto server (with `local.moto_speedups`, as the local stack runs it), then alternates, in the same run:
a raw read of the whole stream with plain boto3 GetRecords (the baseline: what any consumer pays to
get the records), and the article's streaming MV on a fresh emulator catching up from TRIM_HORIZON
with REFRESH MATERIALIZED VIEW: raw, MV, raw, MV, ..., raw. Alternating evens out load drift on a
shared machine; the medians and their ratio are printed (target: MV >= 80% of the raw read rate).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MV_SQL = """CREATE MATERIALIZED VIEW cust_payment_tx_stream AUTO REFRESH YES AS
SELECT approximate_arrival_timestamp, partition_key, shard_id, sequence_number,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TRANSACTION_ID')::bigint as TRANSACTION_ID,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TX_DATETIME')::character(50) as TX_DATETIME,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'CUSTOMER_ID')::int as CUSTOMER_ID,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TERMINAL_ID')::int as TERMINAL_ID,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TX_AMOUNT')::decimal(18,2) as TX_AMOUNT,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TX_TIME_SECONDS')::int as TX_TIME_SECONDS,
json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'),'TX_TIME_DAYS')::int as TX_TIME_DAYS
FROM bench."{stream}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data)"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce(kinesis, stream: str, count: int) -> int:
    rng = random.Random(7)
    malformed = 0
    batch = []
    for i in range(count):
        if rng.random() < 0.005:
            data = b"\xff\xfe not a transaction"
            malformed += 1
        else:
            data = json.dumps({
                "TRANSACTION_ID": i, "TX_DATETIME": f"2018-10-{1 + i % 28:02d} 12:{i % 60:02d}:00",
                "CUSTOMER_ID": rng.randrange(5000), "TERMINAL_ID": rng.randrange(10000),
                "TX_AMOUNT": round(rng.uniform(1, 300), 2), "TX_TIME_SECONDS": i, "TX_TIME_DAYS": i // 86400,
                "PRODUCED_AT": 1538395200000 + i,
            }).encode()  # fmt: skip
        batch.append({"Data": data, "PartitionKey": str(i % 5000)})
        if len(batch) == 500:
            kinesis.put_records(StreamName=stream, Records=batch)
            batch = []
    if batch:
        kinesis.put_records(StreamName=stream, Records=batch)
    return malformed


def raw_read(kinesis, stream: str) -> tuple[int, float]:
    """Read every shard from TRIM_HORIZON with GetRecords, as the MV refresh does; (records, seconds)."""
    start = time.perf_counter()
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            total += len(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return total, time.perf_counter() - start


def mv_refresh(engine_class, stream: str) -> tuple[int, int, float]:
    """The article's streaming MV on a fresh emulator, caught up in one REFRESH; (rows, dropped, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = engine_class(Path(tmp) / "bench.duckdb", auto_refresh_interval=None)
        try:
            engine.execute("CREATE EXTERNAL SCHEMA bench FROM KINESIS IAM_ROLE default")
            engine.execute(MV_SQL.format(stream=stream))
            start = time.perf_counter()
            engine.execute("REFRESH MATERIALIZED VIEW cust_payment_tx_stream")
            seconds = time.perf_counter() - start
            rows = engine.execute("SELECT count(*) FROM cust_payment_tx_stream").rows[0][0]
            skipped = engine.execute("SELECT sum(skipped_rows) FROM sys_stream_scan_states").rows[0][0]
        finally:
            engine.close()
    return rows, skipped, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="MV runs, each between two raw reads")
    args = parser.parse_args()

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    from moto.server import ThreadedMotoServer

    from local import moto_speedups

    moto_speedups.apply()  # as the local stack does: moto's shards without linear scans

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL_KINESIS"] = f"http://127.0.0.1:{port}"
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3

    from local.redshift.engine import Engine
    from local.redshift.streaming import StreamingManager

    # Time spent inside DuckDB (the vectorised projection/WHERE + commit), apart from reading Kinesis.
    ingest_seconds = [0.0]
    original_ingest = StreamingManager._ingest

    def timed_ingest(self, *a, **kw):
        start = time.perf_counter()
        try:
            return original_ingest(self, *a, **kw)
        finally:
            ingest_seconds[0] += time.perf_counter() - start

    StreamingManager._ingest = timed_ingest

    try:
        kinesis = boto3.client("kinesis")
        stream = "bench-ingestion"
        kinesis.create_stream(StreamName=stream, ShardCount=args.shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
        t0 = time.perf_counter()
        malformed = produce(kinesis, stream, args.records)
        print(f"produced {args.records:,} records ({malformed} malformed) on {args.shards} shards "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        raw_runs, mv_runs = [], []
        for _ in range(args.repeat):
            raw_runs.append(raw_read(kinesis, stream))
            mv_runs.append(mv_refresh(Engine, stream))
        raw_runs.append(raw_read(kinesis, stream))
    finally:
        server.stop()

    assert all(count == args.records for count, _ in raw_runs), raw_runs
    for rows, skipped, _ in mv_runs:
        assert rows + skipped == args.records and skipped == malformed, (rows, skipped, malformed)
    raw_s = statistics.median(seconds for _, seconds in raw_runs)
    mv_s = statistics.median(seconds for _, _, seconds in mv_runs)
    raw_rate, mv_rate = args.records / raw_s, args.records / mv_s
    runs = ", ".join(f"{seconds:.2f}" for _, seconds in raw_runs)
    print(f"raw GetRecords read : {raw_rate:>10,.0f} records/s  (median of runs: {runs} s)")
    runs = ", ".join(f"{seconds:.2f}" for _, _, seconds in mv_runs)
    rows, skipped, _ = mv_runs[0]
    print(
        f"streaming MV refresh: {mv_rate:>10,.0f} records/s  (median of runs: {runs} s; {rows:,} rows kept, {skipped} dropped)"
    )
    print(f"ratio MV / raw      : {mv_rate / raw_rate:.2f}  (target >= 0.80)")
    print(f"DuckDB ingest alone : {len(mv_runs) * args.records / ingest_seconds[0]:>10,.0f} records/s  "
          f"({ingest_seconds[0] / len(mv_runs):.2f} s per refresh, overlapped with reading)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
