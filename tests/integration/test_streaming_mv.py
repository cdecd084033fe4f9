"""Streaming ingestion from a moto Kinesis stream into a streaming materialized view."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

from local.redshift.engine import Engine, RedshiftError
from local.redshift.streaming import StreamingManager

pytestmark = pytest.mark.integration

SHARDS = 3
MV_SQL = """CREATE MATERIALIZED VIEW tx_stream AUTO REFRESH YES AS
SELECT approximate_arrival_timestamp, partition_key, shard_id, sequence_number, refresh_time,
  json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TRANSACTION_ID')::bigint AS transaction_id,
  json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), 'TX_AMOUNT')::decimal(18,2) AS tx_amount
FROM kin."{stream}"
WHERE is_utf8(kinesis_data) AND can_json_parse(kinesis_data)"""


@pytest.fixture
def stream(aws_endpoints):
    kinesis = boto3.client("kinesis")
    name = f"tx-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return name


class Producer:
    """Puts valid transactions (ids counting up) and, on request, malformed records."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.kinesis = boto3.client("kinesis")
        self.next_id = 0
        self.valid: list[int] = []
        self.order: dict[int, tuple[str, str]] = {}  # transaction id -> (shard, sequence number)
        self.last_sequence: dict[str, str] = {}  # shard -> sequence number of its latest record
        self.bytes: dict[str, int] = {}  # shard -> bytes of data put, malformed records included

    def put(self, count: int, malformed: bool = False) -> None:
        records = []
        for _ in range(count):
            tid = self.next_id
            self.next_id += 1
            records.append({"Data": json.dumps({"TRANSACTION_ID": tid, "TX_AMOUNT": 1.25}).encode(),
                            "PartitionKey": f"customer-{tid % 17}"})  # fmt: skip
            self.valid.append(tid)
        if malformed:
            records += [
                {"Data": b"\xff\xfe\x00 not utf-8", "PartitionKey": "bad-1"},
                {"Data": b"this is not json", "PartitionKey": "bad-2"},
                {"Data": b'{"TRANSACTION_ID": "not-a-number", "TX_AMOUNT": 1}', "PartitionKey": "bad-3"},
                # valid JSON, but over JSON_EXTRACT_PATH_TEXT's 64 KB limit
                {
                    "Data": json.dumps({"TRANSACTION_ID": -1, "PAD": "x" * 70_000}).encode(),
                    "PartitionKey": "bad-4",
                },
            ]
        for start in range(0, len(records), 500):
            chunk = records[start : start + 500]
            response = self.kinesis.put_records(StreamName=self.stream, Records=chunk)
            assert response["FailedRecordCount"] == 0
            for record, result in zip(chunk, response["Records"], strict=True):
                data = record["Data"]
                self.last_sequence[result["ShardId"]] = result["SequenceNumber"]
                self.bytes[result["ShardId"]] = self.bytes.get(result["ShardId"], 0) + len(data)
                if data.startswith(b'{"TRANSACTION_ID": ') and b"not-a-number" not in data:
                    self.order[json.loads(data)["TRANSACTION_ID"]] = (
                        result["ShardId"],
                        result["SequenceNumber"],
                    )


def open_engine(path, interval=None) -> Engine:
    return Engine(path, auto_refresh_interval=interval)


def setup_view(engine: Engine, stream: str) -> None:
    engine.execute(
        "CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE 'arn:aws:iam::123456789012:role/streaming'"
    )
    engine.execute(MV_SQL.format(stream=stream))


def assert_exactly_once_in_shard_order(engine: Engine, producer: Producer) -> None:
    rows = engine.execute("SELECT shard_id, sequence_number, transaction_id FROM tx_stream").rows
    ids = [r[2] for r in rows]
    assert sorted(ids) == producer.valid, "every valid record exactly once"
    assert len({(r[0], r[1]) for r in rows}) == len(rows), "no duplicate sequence numbers within a shard"
    for shard_id, sequence_number, tid in rows:
        assert producer.order[tid] == (shard_id, sequence_number)
    by_shard: dict[str, list[int]] = {}
    for shard_id, sequence_number, _ in rows:  # stored order within each shard = sequence order
        by_shard.setdefault(shard_id, []).append(int(sequence_number))
    assert len(by_shard) == SHARDS
    for sequence in by_shard.values():
        assert sequence == sorted(sequence)


def test_refresh_ingests_valid_records_once_and_reports_malformed(stream, tmp_path):
    producer = Producer(stream)
    producer.put(300, malformed=True)
    with open_engine(tmp_path / "db.duckdb") as engine:
        setup_view(engine, stream)
        engine.execute("REFRESH MATERIALIZED VIEW tx_stream")
        assert_exactly_once_in_shard_order(engine, producer)

        errors = engine.execute(
            "SELECT error_code, error_reason, mv_name FROM SYS_STREAM_SCAN_ERRORS ORDER BY error_code, error_reason"
        ).rows
        assert [(c, m) for c, _, m in errors] == [(1, "tx_stream"), (2, "tx_stream")] + [(4, "tx_stream")] * 2
        assert "UTF-8" in errors[0][1] and "JSON" in errors[1][1]
        assert sorted(("64 KB" in r, "not-a-number" in r) for _, r, _ in errors[2:]) == [
            (False, True),
            (True, False),
        ]
        scanned, skipped = engine.execute(
            "SELECT sum(scanned_rows), sum(skipped_rows) FROM sys_stream_scan_states WHERE mv_name = 'tx_stream'"
        ).rows[0]
        assert (scanned, skipped) == (304, 4)
        per_shard = engine.execute(
            "SELECT partition_id, latest_position, scanned_bytes, stream_record_time_min <= stream_record_time_max "
            "FROM sys_stream_scan_states WHERE mv_name = 'tx_stream'"
        ).rows
        assert {r[0]: r[1] for r in per_shard} == producer.last_sequence
        assert {r[0]: r[2] for r in per_shard} == producer.bytes, "rejected and failed records' bytes count"
        assert all(r[3] for r in per_shard)

        # Nothing new: a second refresh adds nothing; new records are appended exactly once.
        assert engine.refresh("tx_stream") == 0
        watermark = engine.execute("SELECT max(refresh_time) FROM tx_stream").rows[0][0]
        producer.put(50)
        engine.execute("REFRESH MATERIALIZED VIEW public.tx_stream")
        assert_exactly_once_in_shard_order(engine, producer)

        # refresh_time is a watermark: everything the later refresh added is strictly after it.
        later = engine.execute(
            "SELECT transaction_id FROM tx_stream WHERE refresh_time > :w", {"w": str(watermark)}
        )
        assert sorted(r[0] for r in later.rows) == producer.valid[300:]
        assert engine.execute(
            "SELECT count(*) FROM tx_stream WHERE refresh_time < approximate_arrival_timestamp"
        ).rows == [(0,)]
        history = engine.execute(
            "SELECT refresh_type, status FROM sys_mv_refresh_history WHERE mv_name = 'tx_stream' ORDER BY start_time"
        ).rows
        assert [h[0] for h in history] == ["Manual", "Manual", "Manual"]
        assert history[1][1] == "MV was already updated"
        info = engine.execute("SELECT name, autorefresh, state FROM stv_mv_info").rows
        assert info == [("tx_stream", "t", 1)]


def test_views_over_one_stream_share_reads_and_each_ingests_exactly_once(stream, tmp_path):
    rejects_sql = (
        "CREATE MATERIALIZED VIEW tx_rejects AUTO REFRESH YES AS SELECT shard_id, sequence_number "
        f'FROM kin."{stream}" WHERE NOT (is_utf8(kinesis_data) AND can_json_parse(kinesis_data))'
    )
    producer = Producer(stream)
    with open_engine(tmp_path / "db.duckdb") as engine:
        setup_view(engine, stream)
        engine.execute(rejects_sql)
        for round_ in range(4):  # the two views refreshed in turn, records arriving in between
            producer.put(60, malformed=True)
            engine.refresh("tx_stream")
            if round_ % 2:
                producer.put(30)  # the rejects view reads on past what the other view read
            engine.refresh("tx_rejects")
        engine.refresh("tx_stream")
        assert_exactly_once_in_shard_order(engine, producer)
        rejects = engine.execute("SELECT shard_id, sequence_number FROM tx_rejects").rows
        assert len(rejects) == len(set(rejects)) == 4 * 2  # not UTF-8, not JSON; once each
        assert engine.streaming.shared_reads.hits > 0, "the rejects view took the transaction view's reads"


def test_restart_between_refreshes_keeps_checkpoints(stream, tmp_path):
    producer = Producer(stream)
    path = tmp_path / "db.duckdb"
    producer.put(120, malformed=True)
    with open_engine(path) as engine:
        setup_view(engine, stream)
        engine.refresh("tx_stream")
    producer.put(80, malformed=True)  # produced while the emulator is down
    with open_engine(path) as engine:
        engine.refresh("tx_stream")
        producer.put(40)
        engine.refresh("tx_stream")
        assert_exactly_once_in_shard_order(engine, producer)
        assert engine.execute("SELECT count(*) FROM sys_stream_scan_errors").rows == [(8,)]  # 2 x 4 malformed


def test_crash_before_commit_loses_and_duplicates_nothing(stream, tmp_path, monkeypatch):
    producer = Producer(stream)
    producer.put(200)
    with open_engine(tmp_path / "db.duckdb") as engine:
        setup_view(engine, stream)
        original = StreamingManager._record_scan

        def crash(*args, **kwargs):
            original(*args, **kwargs)
            raise KeyboardInterrupt("power cut after the rows and checkpoints were written, before COMMIT")

        monkeypatch.setattr(StreamingManager, "_record_scan", crash)
        with pytest.raises(KeyboardInterrupt):
            engine.refresh("tx_stream")
        monkeypatch.setattr(StreamingManager, "_record_scan", original)
        assert engine.execute("SELECT count(*) FROM tx_stream").rows == [(0,)]
        producer.put(30)
        engine.refresh("tx_stream")
        assert_exactly_once_in_shard_order(engine, producer)


def test_auto_refresh_runs_in_the_background(stream, tmp_path):
    producer = Producer(stream)
    with open_engine(tmp_path / "db.duckdb", interval=0.2) as engine:
        setup_view(engine, stream)
        producer.put(100, malformed=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if engine.execute("SELECT count(*) FROM tx_stream").rows[0][0] == 100:
                break
            time.sleep(0.1)
        assert_exactly_once_in_shard_order(engine, producer)
        types = {r[0] for r in engine.execute("SELECT refresh_type FROM sys_mv_refresh_history").rows}
        assert types == {"Auto"}


def test_stream_errors_are_clear(stream, tmp_path):
    with open_engine(tmp_path / "db.duckdb") as engine:
        engine.execute("CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE default")
        with pytest.raises(RedshiftError, match='schema "kin" already exists'):
            engine.execute("CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE default")
        with pytest.raises(RedshiftError, match='stream "no-such-stream" does not exist'):
            engine.execute(MV_SQL.format(stream="no-such-stream"))
        with pytest.raises(RedshiftError, match="through a streaming materialized view"):
            engine.execute(f'SELECT * FROM kin."{stream}"')
        with pytest.raises(RedshiftError, match='materialized view "nope" does not exist'):
            engine.execute("REFRESH MATERIALIZED VIEW nope")
        engine.execute(MV_SQL.format(stream=stream))
        engine.execute("DROP MATERIALIZED VIEW tx_stream")
        assert engine.execute("SELECT count(*) FROM stv_mv_info").rows == [(0,)]
