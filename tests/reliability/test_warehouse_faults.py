"""Faults on the warehouse side: transient Data API failures and lost responses, and the emulator process
killed mid-stream and started again on the same file."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from tests.reliability.conftest import (
    Injector,
    Pipeline,
    handler_module,
    http_error,
    record,
    send_then_lose_response,
    wait_for,
)

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[2]
# The statements whose lost response makes botocore send them again: each must be idempotent.
WRITES = ("INSERT INTO fraud_scores", "INSERT INTO fraud_alerts", "UPDATE fraud_alerts")


def test_transient_data_api_failures_and_lost_responses(pipeline: Pipeline) -> None:
    transactions = pipeline.next_transactions(200)
    pipeline.write(transactions)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    pipeline.wait_ingested(ids)
    before = pipeline.snapshot(ids)
    client = handler_module(pipeline.stack, "score_and_alert")._dependencies()[0].client
    rng = random.Random(8)
    lost: list[str] = []

    def flaky(request: object, _n: int) -> object:
        if rng.random() < 0.2:  # throttled or a 500: botocore retries it
            return rng.choice(
                [http_error("ThrottlingException", 400), http_error("InternalServerException", 500)]
            )
        return None

    def flaky_or_lost(request: object, n: int) -> object:
        sql = json.loads(request.body).get("Sql", "")
        if any(w in sql for w in WRITES) and rng.random() < 0.35:
            lost.append(sql.split("\n")[0][:60])
            send_then_lose_response(request)  # ran on the warehouse; botocore submits it again
        return flaky(request, n)

    injectors = [
        Injector(client, "redshift-data", "ExecuteStatement", flaky_or_lost, stage="send"),
        Injector(client, "redshift-data", "DescribeStatement", flaky, stage="send"),
        Injector(client, "redshift-data", "GetStatementResult", flaky, stage="send"),
    ]
    failed_invocations = 0
    for injector in injectors:
        injector.__enter__()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                pipeline.score_and_alert()
            except Exception:  # retries exhausted: the invocation fails, the next one catches up
                failed_invocations += 1
            snap = pipeline.snapshot(ids)
            if snap.scored_distinct >= len(ids) and snap.outbox_pending == 0:
                break
            assert time.monotonic() < deadline, f"not drained under faults: {snap}"
    finally:
        for injector in injectors:
            injector.__exit__()
    injected = sum(i.injected for i in injectors)
    assert injected > 0 and lost, "the faults must have fired for the test to mean anything"
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    record(
        "transient Data API failures",
        f"{injected} of {sum(i.calls for i in injectors)} HTTP attempts faulted (20% throttled/500), "
        f"{len(lost)} writes ran but their response was lost (botocore re-sent them)",
        before,
        after,
        failed_invocations=failed_invocations,
    )


# -- the warehouse process killed mid-stream ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_emulator(db: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "local", "redshift", "--db", str(db), "--port", str(port)],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = process.stdout.readline()
    assert "Data API emulator on" in line, line + process.stdout.read()
    return process


def test_warehouse_killed_mid_stream_neither_loses_nor_duplicates(pipeline: Pipeline, tmp_path: Path) -> None:
    from fraud_common.dataapi import DataApi
    from fraud_common.settings import WarehouseSettings
    from fraud_common.sqlfiles import fill, split_statements

    from producer.kinesis import KinesisWriter

    kinesis = boto3.client("kinesis")
    streams = {
        "TX_STREAM": f"restart-tx-{uuid.uuid4().hex[:8]}",
        "LABEL_STREAM": f"restart-lb-{uuid.uuid4().hex[:8]}",
    }
    for name in streams.values():
        kinesis.create_stream(StreamName=name, ShardCount=2)
        kinesis.get_waiter("stream_exists").wait(StreamName=name)
    port, db = _free_port(), tmp_path / "restart.duckdb"
    client = boto3.client("redshift-data", endpoint_url=f"http://127.0.0.1:{port}")
    api = DataApi(WarehouseSettings(database="dev", workgroup="restart"), client=client)
    process = _start_emulator(db, port)
    try:
        placeholders = {**pipeline.sql.placeholders(), **streams}
        text = (REPO / "sql" / "migrations" / "001_streams.sql").read_text()
        for statement in split_statements(fill(text, placeholders)):
            api.execute(statement)

        def ingested() -> tuple[int, int]:
            row = api.query(
                "SELECT count(*) AS n, count(DISTINCT transaction_id) AS d FROM cust_payment_tx_stream"
            )[0]
            return int(row["n"]), int(row["d"])

        transactions = pipeline.next_transactions(900)
        records = pipeline.encode(transactions)
        with KinesisWriter(streams["TX_STREAM"], linger_s=0.05) as writer:
            for tx, data in zip(transactions[:300], records[:300], strict=True):
                writer.put(data, partition_key=str(tx.CUSTOMER_ID))
            writer.flush()
            wait_for(lambda: ingested()[0] > 0, 30, "the first records ingested")
            for tx, data in zip(transactions[300:600], records[300:600], strict=True):
                writer.put(data, partition_key=str(tx.CUSTOMER_ID))
            writer.flush()
            ingested_before_kill = ingested()[0]
            process.send_signal(signal.SIGKILL)  # mid-stream: AUTO REFRESH runs every second
            process.wait(10)
            with pytest.raises(EndpointConnectionError):
                api.query("SELECT 1")  # while it is down: a clear connection error, nothing half-done
            for tx, data in zip(transactions[600:], records[600:], strict=True):
                writer.put(data, partition_key=str(tx.CUSTOMER_ID))
        process = _start_emulator(db, port)
        wait_for(lambda: ingested()[0] >= len(transactions), 60, "every record ingested after the restart")
        time.sleep(2)  # a few more AUTO REFRESH rounds: a duplicate would show up now
        n, distinct = ingested()
        ids = {
            int(r["transaction_id"]) for r in api.query("SELECT transaction_id FROM cust_payment_tx_stream")
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert (n, distinct) == (len(transactions), len(transactions))
    assert ids == {tx.TRANSACTION_ID for tx in transactions}
    record(
        "warehouse killed mid-stream",
        "emulator process SIGKILLed after 600 of 900 records were put (AUTO REFRESH running), 300 more put "
        "while it was down, restarted on the same file",
        {"ingested_at_kill": ingested_before_kill},
        {"ingested": n, "distinct": distinct, "produced": len(transactions)},
    )
