"""The producer against a real moto server with real boto3: read-back, retries, limits, errors, CLI."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from producer import cli
from producer.export import export_history, parse_s3_uri, upload_to_s3
from producer.kinesis import (
    MAX_BYTES_PER_CALL,
    KinesisWriter,
    ProducerError,
    RateLimiter,
    RecordTooLargeError,
    StreamNotFoundError,
)
from producer.simulator import COLUMNS, LiveSimulator, WorldConfig, customer_info, simulate_history
from producer.stream import run_stream
from tests.conftest import REPO

pytestmark = pytest.mark.integration

SMALL = WorldConfig(n_customers=300, n_terminals=600, n_days=12, seed=5)
SMALL_ARGS = ["--customers", "300", "--terminals", "600", "--days", "12", "--seed", "5"]


@pytest.fixture(scope="module")
def small_world():
    return simulate_history(SMALL)


@pytest.fixture
def kinesis(aws_endpoints: str) -> Any:
    return boto3.client("kinesis")


@pytest.fixture
def make_stream(kinesis):
    def make(shards: int = 2) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
        return name

    return make


def read_all(kinesis, stream: str) -> list[tuple[str, dict]]:
    """Every record of every shard from TRIM_HORIZON: (partition key, decoded JSON)."""
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [(r["PartitionKey"], json.loads(r["Data"])) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


class FaultyClient:
    """The real client, except that chosen PutRecords entries or calls fail as Kinesis reports them.

    `fail_record(entry, call_number)` returns an ErrorCode for an entry to reject (it is then NOT
    sent, like a throttled record) or None; `fail_call(call_number)` returns an error code to raise
    for the whole call, or None.
    """

    def __init__(self, real, fail_record=None, fail_call=None):
        self.real = real
        self.fail_record = fail_record or (lambda entry, call: None)
        self.fail_call = fail_call or (lambda call: None)
        self.calls: list[list[dict]] = []

    def describe_stream_summary(self, **kwargs):
        return self.real.describe_stream_summary(**kwargs)

    def put_records(self, StreamName, Records):
        call = len(self.calls)
        self.calls.append(Records)
        code = self.fail_call(call)
        if code:
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "PutRecords")
        verdicts = [self.fail_record(entry, call) for entry in Records]
        passed = [entry for entry, verdict in zip(Records, verdicts, strict=True) if not verdict]
        sent = iter(self.real.put_records(StreamName=StreamName, Records=passed)["Records"] if passed else [])
        results = [
            {"ErrorCode": verdict, "ErrorMessage": "injected"} if verdict else next(sent)
            for verdict in verdicts
        ]
        return {"FailedRecordCount": sum(1 for v in verdicts if v), "Records": results}


# --- run_stream: every record read back exactly once --------------------------------------------------


def test_stream_delivers_every_transaction_and_due_label_exactly_once(kinesis, make_stream, small_world):
    world, history = small_world
    tx_stream, label_stream = make_stream(2), make_stream(1)
    produced: list[tuple[Any, int]] = []
    started_ms = time.time_ns() // 1_000_000
    with KinesisWriter(tx_stream) as tx_writer, KinesisWriter(label_stream) as label_writer:
        stats = run_stream(
            LiveSimulator(world, after=history),
            tx_writer,
            label_writer,
            rate=100_000,
            max_records=1500,
            label_delay_days=0.5,
            on_produced=lambda tx, at: produced.append((tx, at)),
        )
    assert stats.transactions == len(produced) == 1500 and stats.stopped_by == "max_records"
    assert stats.failed == 0 and tx_writer.stats.sent == 1500

    records = read_all(kinesis, tx_stream)
    assert len(records) == 1500
    by_id = {body["TRANSACTION_ID"]: (key, body) for key, body in records}
    assert len(by_id) == 1500  # no duplicates
    for tx, produced_at in produced:
        key, body = by_id[tx.TRANSACTION_ID]
        assert key == str(tx.CUSTOMER_ID)
        assert body == {
            "TRANSACTION_ID": tx.TRANSACTION_ID,
            "TX_DATETIME": tx.TX_DATETIME,
            "CUSTOMER_ID": tx.CUSTOMER_ID,
            "TERMINAL_ID": tx.TERMINAL_ID,
            "TX_AMOUNT": round(tx.TX_AMOUNT, 2),
            "TX_TIME_SECONDS": tx.TX_TIME_SECONDS,
            "TX_TIME_DAYS": tx.TX_TIME_DAYS,
            "PRODUCED_AT": produced_at,
        }
        assert started_ms <= produced_at <= time.time_ns() // 1_000_000
    assert len(history) == produced[0][0].TRANSACTION_ID

    # labels: exactly those whose delay has passed by the last produced event time, once each
    last_seconds = produced[-1][0].TX_TIME_SECONDS
    due = {tx.TRANSACTION_ID: tx for tx, _ in produced if last_seconds >= tx.TX_TIME_SECONDS + 43_200}
    labels = read_all(kinesis, label_stream)
    assert stats.labels == len(labels) == len(due) > 0
    assert stats.labels_pending == 1500 - len(due)
    assert {body["TRANSACTION_ID"] for _, body in labels} == set(due)
    for key, body in labels:
        tx = due[body["TRANSACTION_ID"]]
        assert key == str(tx.CUSTOMER_ID)
        assert body["TX_FRAUD"] == tx.TX_FRAUD
        expected = dt.datetime.fromisoformat(tx.TX_DATETIME) + dt.timedelta(hours=12)
        assert body["LABELLED_AT"] == expected.strftime("%Y-%m-%d %H:%M:%S")
    assert any(body["TX_FRAUD"] == 1 for _, body in labels)


def test_stream_stops_on_the_stop_event_and_flushes(kinesis, make_stream, small_world):
    world, history = small_world
    stream = make_stream(1)
    stop = threading.Event()
    with KinesisWriter(stream, linger_s=60) as writer:  # nothing leaves the buffer until the flush
        stats = {}
        worker = threading.Thread(
            target=lambda: stats.update(
                s=run_stream(LiveSimulator(world, after=history), writer, None, 200, stop_event=stop)
            )
        )
        worker.start()
        time.sleep(0.6)
        stop.set()
        worker.join(5)
        assert not worker.is_alive()
    result = stats["s"]
    assert result.stopped_by == "stop_event" and 20 < result.transactions < 400
    assert len(read_all(kinesis, stream)) == result.transactions == writer.stats.sent


def test_stream_honours_the_rate(make_stream, small_world):
    world, history = small_world
    with KinesisWriter(make_stream(1)) as writer:
        stats = run_stream(LiveSimulator(world, after=history), writer, None, rate=200, duration_s=1.5)
    assert stats.stopped_by == "duration"
    assert 150 <= stats.transactions <= 320  # at most 1 + 1.5 s x 200/s; the lower bound allows a busy CI


# --- retries, throttling, giving up --------------------------------------------------------------------


def test_partial_failures_and_throttled_calls_are_retried_and_counted(kinesis, make_stream):
    stream = make_stream(2)
    faulty = FaultyClient(
        kinesis,
        fail_record=lambda entry, call: (
            ("ProvisionedThroughputExceededException" if call % 2 else "InternalFailure")
            if call < 3 and json.loads(entry["Data"])["n"] % 3 == 0
            else None
        ),
        fail_call=lambda call: "ProvisionedThroughputExceededException" if call == 3 else None,
    )
    sleeps: list[float] = []
    with KinesisWriter(stream, client=faulty, sleep=sleeps.append, base_delay_s=0.01) as writer:
        for n in range(1200):
            writer.put(json.dumps({"n": n}), partition_key=str(n % 37))
    assert writer.stats.sent == 1200 and writer.stats.failed == 0
    assert writer.stats.retried > 0 and writer.stats.throttled > 0 and sleeps
    assert all(len(call) <= 500 for call in faulty.calls)
    got = sorted(body["n"] for _, body in read_all(kinesis, stream))
    assert got == list(range(1200))  # every record exactly once


def test_records_failing_every_attempt_are_given_up_on_and_reported(kinesis, make_stream):
    stream = make_stream(1)
    faulty = FaultyClient(
        kinesis,
        fail_record=lambda entry, call: "InternalFailure" if json.loads(entry["Data"])["n"] == 7 else None,
    )
    sleeps: list[float] = []
    with KinesisWriter(
        stream, client=faulty, max_attempts=3, sleep=sleeps.append, base_delay_s=1.0
    ) as writer:
        for n in range(20):
            writer.put(json.dumps({"n": n}), partition_key="k")
    assert (writer.stats.sent, writer.stats.failed, writer.stats.retried) == (19, 1, 2)
    assert len(faulty.calls) == 3
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter, doubling
    (failed,) = writer.given_up
    assert json.loads(failed.data) == {"n": 7} and failed.error_code == "InternalFailure"
    assert json.loads(failed.to_json())["error_code"] == "InternalFailure"
    assert sorted(body["n"] for _, body in read_all(kinesis, stream)) == [n for n in range(20) if n != 7]


def test_a_non_retryable_error_keeps_unsent_records_until_abandoned(kinesis, make_stream):
    faulty = FaultyClient(kinesis, fail_call=lambda call: "AccessDeniedException")
    writer = KinesisWriter(make_stream(1), client=faulty)
    for n in range(10):
        writer.put(json.dumps({"n": n}), partition_key="k")
    with pytest.raises(ClientError, match="AccessDenied"):
        writer.flush()
    with pytest.raises(ClientError):
        writer.put("{}", partition_key="k")
    assert writer.stats.sent == 0 and writer.stats.failed == 0
    assert writer.abandon("NotSent") == 10
    assert writer.stats.failed == 10 and len(writer.given_up) == 10


def test_an_endpoint_restart_mid_stream_loses_nothing(aws_endpoints, monkeypatch):
    """The Kinesis endpoint goes away and comes back: connection errors are retried, nothing is lost."""
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # botocore's own retries off, so the writer's retry path is what keeps the records
    client = boto3.client(
        "kinesis", endpoint_url=f"http://127.0.0.1:{port}", config=Config(retries={"total_max_attempts": 1})
    )
    stream = f"restart-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=stream, ShardCount=1)
    writer = KinesisWriter(stream, client=client, base_delay_s=0.2, max_delay_s=1.0, max_attempts=20)
    for n in range(100):
        writer.put(json.dumps({"n": n}), partition_key="k")
    writer.flush()
    server.stop()
    for n in range(100, 200):
        writer.put(json.dumps({"n": n}), partition_key="k")
    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    threading.Timer(1.0, restarted.start).start()
    try:
        writer.close()
        assert writer.stats.sent == 200 and writer.stats.failed == 0 and writer.stats.retried > 0
        assert sorted(body["n"] for _, body in read_all(client, stream)) == list(range(200))
    finally:
        time.sleep(0.1)
        restarted.stop()


def test_batches_respect_the_call_size_limit(kinesis, make_stream):
    stream = make_stream(1)
    counting = FaultyClient(kinesis)
    payload = "x" * 900_000
    with KinesisWriter(stream, client=counting) as writer:
        for n in range(12):
            writer.put(json.dumps({"n": n, "pad": payload}), partition_key="k")
    sizes = [sum(len(e["Data"]) + len(e["PartitionKey"]) for e in call) for call in counting.calls]
    assert len(sizes) >= 3 and max(sizes) <= MAX_BYTES_PER_CALL
    assert sorted(body["n"] for _, body in read_all(kinesis, stream)) == list(range(12))


def test_bad_records_are_rejected_before_buffering(make_stream):
    with KinesisWriter(make_stream(1)) as writer:
        with pytest.raises(RecordTooLargeError, match="exceeds"):
            writer.put(b"x" * (1024 * 1024), partition_key="k")
        with pytest.raises(ProducerError, match="partition key"):
            writer.put(b"{}", partition_key="")
        assert writer.buffered == 0


def test_unknown_stream_is_a_clear_error(aws_endpoints):
    with pytest.raises(StreamNotFoundError, match="'no-such-stream' not found"):
        KinesisWriter("no-such-stream")


def test_rate_limiter_is_steady():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(rate=50, clock=lambda: now[0], sleep=sleep)
    for _ in range(500):
        limiter.acquire()
    assert now[0] == pytest.approx(500 / 50, abs=0.2)
    with pytest.raises(ValueError):
        RateLimiter(rate=0)


# --- export ------------------------------------------------------------------------------------------


def test_history_export_round_trips_and_uploads_to_s3(aws_endpoints, tmp_path, small_world):
    pd = pytest.importorskip("pandas")
    world, history = small_world
    info = customer_info(world)
    paths = export_history(history, info, tmp_path, gzip=True)
    assert not list(tmp_path.glob("*.tmp"))
    back = pd.read_csv(paths["transactions"])
    assert list(back.columns) == list(COLUMNS)
    expected = history.to_pandas()
    expected["TX_DATETIME"] = expected.TX_DATETIME.dt.strftime("%Y-%m-%d %H:%M:%S")
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    with gzip.open(paths["transactions"], "rt") as handle:
        handle.readline()
        assert handle.readline().split(",")[1].count(":") == 2  # "YYYY-MM-DD HH:MM:SS"
    people = pd.read_csv(paths["customer_info"], dtype=str)
    assert list(people.columns) == [
        "customer_id",
        "job_title",
        "email_address",
        "full_name",
        "phone_number",
        "city",
        "state",
    ]
    assert len(people) == SMALL.n_customers

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="history-bucket")
    uris = upload_to_s3(paths.values(), "s3://history-bucket/hist/v1/")
    assert uris == [
        "s3://history-bucket/hist/v1/transactions.csv.gz",
        "s3://history-bucket/hist/v1/customer_info.csv.gz",
    ]
    body = s3.get_object(Bucket="history-bucket", Key="hist/v1/transactions.csv.gz")["Body"].read()
    assert body == paths["transactions"].read_bytes()
    with pytest.raises(ProducerError, match="'missing-bucket' not found"):
        upload_to_s3(paths.values(), "s3://missing-bucket/x")


@pytest.mark.parametrize("uri", ["bucket/prefix", "s3://", "s3:///prefix", "https://b/p"])
def test_bad_s3_uris_are_rejected(uri):
    with pytest.raises(ProducerError, match="not an S3 URI"):
        parse_s3_uri(uri)


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_stream_sends_and_reports(kinesis, make_stream, capsys):
    tx_stream, label_stream = make_stream(1), make_stream(1)
    code = cli.main(
        ["stream", *SMALL_ARGS, "--stream", tx_stream, "--label-stream", label_stream, "--rate", "5000",
         "--max-records", "400", "--label-delay-days", "0.25"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "stream: 400 transactions" in out and f"{tx_stream}: sent 400, failed 0" in out
    assert len(read_all(kinesis, tx_stream)) == 400
    assert 0 < len(read_all(kinesis, label_stream)) < 400


def test_cli_history_writes_and_uploads(aws_endpoints, tmp_path, capsys):
    boto3.client("s3").create_bucket(Bucket="cli-history")
    code = cli.main(["history", *SMALL_ARGS, "--out-dir", str(tmp_path), "--s3-uri", "s3://cli-history/h"])
    out = capsys.readouterr().out
    assert code == 0 and "uploaded s3://cli-history/h/transactions.csv" in out
    assert (tmp_path / "transactions.csv").read_text().startswith(",".join(COLUMNS) + "\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["stream", *SMALL_ARGS, "--stream", "no-such-stream", "--max-records", "5"], "Kinesis stream 'no-such-stream' not found"),
        (["history", *SMALL_ARGS, "--out-dir", "OUT", "--s3-uri", "s3://no-such-bucket/h"], "S3 bucket 'no-such-bucket' not found"),
        (["history", "--customers", "2", "--days", "1"], "n_customers must be >= 3"),
        (["history", "--s3-uri", "bucket/h", "--out-dir", "OUT"], "not an S3 URI"),  # before simulating
    ],
)  # fmt: skip
def test_cli_user_errors_are_one_line_with_exit_code_2(aws_endpoints, tmp_path, capsys, argv, message):
    argv = [str(tmp_path) if arg == "OUT" else arg for arg in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "bad",
    [["--rate", "0"], ["--rate", "abc"], ["--max-records", "-1"], ["--duration", "1", "--max-records", "1"]],
)
def test_cli_bad_arguments_exit_2(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["stream", "--stream", "s", *bad])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def _cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "AWS_EC2_METADATA_DISABLED": "true", **extra}


def test_cli_without_credentials_says_so(aws_endpoints, tmp_path):
    env = _cli_env(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(key)
    result = subprocess.run(
        [sys.executable, "-m", "producer", "stream", "--stream", "s", *SMALL_ARGS],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error: no AWS credentials found" in result.stderr and "Traceback" not in result.stderr


def test_cli_sigterm_stops_cleanly_and_flushes(kinesis, make_stream, tmp_path):
    stream = make_stream(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "producer", "stream", *SMALL_ARGS, "--stream", stream, "--rate", "300",
         "--duration", "120", "--dead-letter", str(tmp_path / "dead.jsonl")],
        env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not read_all(kinesis, stream) and time.monotonic() < deadline:
            time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped by stop_event" in out and "Traceback" not in err
    sent = int(re.search(rf"{stream}: sent ([\d,]+), failed 0", out).group(1).replace(",", ""))
    assert sent > 0 and len(read_all(kinesis, stream)) == sent
    assert not Path(tmp_path / "dead.jsonl").exists()


# --- the producer process of the local stack's live runs (local.live) ---------------------------------


def produce_in_child(
    live: LiveSimulator, tx_stream: str, label_stream: str, seconds: float
) -> tuple[Any, dict]:
    """Run local.live's producer process as run_live does; (the monitor it fed, its final report)."""
    import multiprocessing

    from local.live import _produce, _receive
    from local.monitor import Monitor

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    child = context.Process(
        target=_produce, args=(sender, stop, live, tx_stream, label_stream, 400, seconds), daemon=True
    )
    child.start()
    sender.close()
    monitor, box = Monitor(), {}
    _receive(receiver, monitor, box)
    child.join(timeout=30)
    return monitor, box


def test_producer_process_reports_every_transaction_and_continues_the_world(
    kinesis, make_stream, small_world
):
    world, history = small_world
    tx_stream, label_stream = make_stream(2), make_stream(1)
    live = LiveSimulator(world, after=history)
    monitor, box = produce_in_child(live, tx_stream, label_stream, seconds=1.0)
    assert "error" not in box
    stats, (day, next_id), cpu_s = box["stats"], box["cursor"], box["cpu_s"]
    assert stats.transactions == monitor.produced > 0 and cpu_s > 0
    ids = {body["TRANSACTION_ID"]: body for _, body in read_all(kinesis, tx_stream)}
    assert sorted(ids) == sorted(monitor.produced_at), "the monitor saw exactly what reached the stream"
    assert sum(monitor.truth.values()) == monitor.frauds_produced == stats.frauds
    assert monitor.produced_order == sorted(monitor.produced_order)
    assert day > world.config.n_days and next_id > max(ids), "the cursor the child ended at comes back"


def test_producer_process_failure_is_reported_not_hung(aws_endpoints, small_world):
    world, history = small_world
    monitor, box = produce_in_child(
        LiveSimulator(world, after=history), "no-such-stream", "no-such-labels", 1.0
    )
    assert "no-such-stream" in box["error"] and "stats" not in box
    assert monitor.produced == 0


def test_a_producer_process_gone_without_a_report_is_an_error() -> None:
    import multiprocessing

    from local.live import _receive
    from local.monitor import Monitor

    receiver, sender = multiprocessing.Pipe(duplex=False)
    sender.send([(1, 0, 1_700_000_000_000)])
    sender.close()  # as when the child is killed
    monitor, box = Monitor(), {}
    _receive(receiver, monitor, box)
    assert monitor.produced == 1 and "without a report" in box["error"]
