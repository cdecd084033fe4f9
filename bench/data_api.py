"""Data API overhead: N small statements through the endpoint (boto3) vs directly on the Engine.

Both run in this process on the same DuckDB file, one after the other, with the same statements:
half parameterised INSERTs, half parameterised point SELECTs. Through the endpoint each statement is
what a client does on AWS: ExecuteStatement, DescribeStatement until done, GetStatementResult when
there is a result set. Two client strategies are timed: polling (first DescribeStatement at once,
then a short exponential backoff) and a single DescribeStatement with WaitTimeSeconds (server-side
wait). Prints the ratio to the direct baseline and the overhead per statement in ms.

    .venv/bin/python bench/data_api.py [--statements 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from local.redshift.engine import Engine
from local.redshift.server import start_server

DONE = ("FINISHED", "FAILED", "ABORTED")


def statements(n: int, table: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for i in range(n):
        key = str(i // 2)
        if i % 2 == 0:
            out.append(
                (f"INSERT INTO {table} VALUES (:id, :amount)", {"id": key, "amount": f"{i * 1.5:.2f}"})
            )
        else:
            out.append((f"SELECT id, amount FROM {table} WHERE id = :id", {"id": key}))
    return out


def run_direct(engine: Engine, work: list[tuple[str, dict[str, str]]]) -> int:
    rows = 0
    for sql, params in work:
        rows += len(engine.execute(sql, params).rows)
    return rows


def poll(client: Any, statement_id: str) -> tuple[dict[str, Any], int]:
    """What an efficient AWS client does: look at once (local statements finish in about a
    millisecond), then back off from 1 ms up to 50 ms. Returns the description and the calls made."""
    delay, calls = 0.001, 0
    while True:
        desc, calls = client.describe_statement(Id=statement_id), calls + 1
        if desc["Status"] in DONE:
            return desc, calls
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def long_poll(client: Any, statement_id: str) -> tuple[dict[str, Any], int]:
    calls = 0
    while True:
        desc, calls = client.describe_statement(Id=statement_id, WaitTimeSeconds=5), calls + 1
        if desc["Status"] in DONE:
            return desc, calls


def run_endpoint(
    client: Any,
    work: list[tuple[str, dict[str, str]]],
    wait: Callable[[Any, str], tuple[dict[str, Any], int]],
) -> tuple[int, int]:
    """Rows read and DescribeStatement calls made."""
    rows = describes = 0
    for sql, params in work:
        parameters = [{"name": k, "value": v} for k, v in params.items()]
        statement_id = client.execute_statement(
            Sql=sql, Parameters=parameters, WorkgroupName="bench-wg", Database="dev"
        )["Id"]
        desc, calls = wait(client, statement_id)
        describes += calls
        if desc["Status"] != "FINISHED":
            raise SystemExit(f"statement failed: {desc.get('Error')}")
        if desc["HasResultSet"]:
            rows += len(client.get_statement_result(Id=statement_id)["Records"])
    return rows, describes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=1000)
    args = parser.parse_args()
    n = args.statements
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp) / "bench.duckdb")
        for table in ("direct_tx", "poll_tx", "wait_tx"):
            engine.execute(f"CREATE TABLE {table} (id INT, amount DECIMAL(12,2))")
        handle = start_server(engine)
        try:
            client = boto3.client("redshift-data", endpoint_url=handle.url)
            client.list_statements()  # open the HTTP connection before timing

            started = time.perf_counter()
            direct_rows = run_direct(engine, statements(n, "direct_tx"))
            direct = time.perf_counter() - started

            started = time.perf_counter()
            poll_rows, poll_describes = run_endpoint(client, statements(n, "poll_tx"), poll)
            polled = time.perf_counter() - started

            started = time.perf_counter()
            wait_rows, wait_describes = run_endpoint(client, statements(n, "wait_tx"), long_poll)
            waited = time.perf_counter() - started
        finally:
            handle.shutdown()
            engine.close()

    if not direct_rows == poll_rows == wait_rows == n // 2:
        raise SystemExit(f"row counts differ: direct {direct_rows}, poll {poll_rows}, wait {wait_rows}")
    print(f"{n} statements ({n // 2} INSERT + {n // 2} point SELECT, :name parameters)")
    print(f"  direct Engine.execute:             {direct:7.3f} s  {direct / n * 1000:6.3f} ms/statement")
    for label, elapsed, describes in (
        ("endpoint, polling DescribeStatement", polled, poll_describes),
        ("endpoint, DescribeStatement wait   ", waited, wait_describes),
    ):
        print(
            f"  {label}: {elapsed:7.3f} s  {elapsed / n * 1000:6.3f} ms/statement  "
            f"ratio {elapsed / direct:5.2f}x  overhead {(elapsed - direct) / n * 1000:6.3f} ms/statement  "
            f"({describes / n:.2f} DescribeStatement calls/statement)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
