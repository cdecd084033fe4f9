"""Faults on the stream side: malformed records mixed into a real slice, and Kinesis throttling the producer."""

from __future__ import annotations

import json

import boto3
import pytest

from producer.kinesis import KinesisWriter, RecordTooLargeError
from tests.reliability.conftest import Injector, Pipeline, error_response, partial_put_records, record

pytestmark = pytest.mark.reliability

OUTSIDE = 10**12  # ids for malformed records, far from the live world's ids


def malformed_records() -> dict[str, list[bytes]]:
    valid = {
        "TRANSACTION_ID": OUTSIDE,
        "TX_DATETIME": "2025-01-01 10:00:00",
        "CUSTOMER_ID": 1,
        "TERMINAL_ID": 1,
        "TX_AMOUNT": 1.0,
        "TX_TIME_SECONDS": 1,
        "TX_TIME_DAYS": 1,
        "PRODUCED_AT": 1,
    }

    def variant(i: int, **changes: object) -> bytes:
        body = {**valid, "TRANSACTION_ID": OUTSIDE + i, **changes}
        return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()

    return {
        "not UTF-8": [b"\xff\xfe\x00bad", b'{"TRANSACTION_ID": 1\xc3\x28}'],
        "not JSON": [b"{not json", b"TRANSACTION_ID=1"],
        "missing fields": [variant(1, CUSTOMER_ID=...), variant(2, TX_AMOUNT=..., TX_DATETIME=...)],
        "wrong types": [
            variant(3, TRANSACTION_ID="abc"),
            variant(4, TX_AMOUNT="lots"),
            variant(5, CUSTOMER_ID=[1]),
        ],
        "over 64 KB JSON": [variant(6, PADDING="x" * 70_000)],
    }


def dropped(pipeline: Pipeline) -> dict[str, int]:
    rows = pipeline.api.query("SELECT reason, records FROM ops_dropped_records")
    return {r["reason"]: int(r["records"]) for r in rows}


def test_malformed_records_are_counted_and_dropped_while_the_rest_flows(pipeline: Pipeline) -> None:
    transactions = pipeline.next_transactions(300)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    valid = pipeline.encode(transactions)
    bad = malformed_records()
    n_bad = sum(len(v) for v in bad.values())
    duplicates = valid[:3]  # a producer retry that re-sent records Kinesis had taken
    before = pipeline.snapshot(ids)
    dropped_before = dropped(pipeline)
    # Over 1 MB: Kinesis refuses such a record (moto does not enforce the limit, so the producer's own
    # check is what is exercised here); it never reaches the stream and the writer says so.
    with KinesisWriter(pipeline.sql.tx_stream) as writer, pytest.raises(RecordTooLargeError) as refused:
        writer.put(b"x" * (1024 * 1024 + 1), partition_key="1")
    assert writer.stats.sent == 0
    mixed: list[tuple[bytes, str]] = []
    bad_iter = iter([r for records in bad.values() for r in records])
    for i, (tx, data) in enumerate(zip(transactions, valid, strict=True)):
        mixed.append((data, str(tx.CUSTOMER_ID)))
        if i % 25 == 12:
            mixed += [(r, "bad") for r in [next(bad_iter, None)] if r is not None]
    mixed += [(r, "bad") for r in bad_iter]
    mixed += [(d, "dup") for d in duplicates]
    pipeline.put_raw(mixed)
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    assert after.ingested_rows == len(ids) + len(duplicates), "duplicates are ingested, then scored once"
    # Not UTF-8 / not JSON / over 64 KB: counted in the rejects view. Missing fields / wrong types: NULL
    # fields (TRY_CAST), counted and kept out of scoring. None of them fails a refresh.
    assert after.rejects - before.rejects == len(bad["not UTF-8"]) + len(bad["not JSON"]) + len(
        bad["over 64 KB JSON"]
    )
    dropped_after = dropped(pipeline)
    change = {k: dropped_after[k] - dropped_before.get(k, 0) for k in dropped_after}
    assert change["missing or invalid field"] == len(bad["missing fields"]) + len(bad["wrong types"])
    scan_errors = pipeline.api.query(
        "SELECT count(*) AS n, count(CASE WHEN error_code = 4 THEN 1 END) AS projection_failures "
        "FROM sys_stream_scan_errors WHERE mv_name = 'cust_payment_tx_stream'"
    )[0]
    print(f"ops_dropped_records change: {change}; sys_stream_scan_errors: {scan_errors['n']}")
    assert int(scan_errors["projection_failures"]) == 0, (
        "a record failed the MV's projection (on Redshift: a failed refresh)"
    )
    leaked = pipeline.api.query(
        "SELECT count(*) AS n FROM fraud_scores WHERE transaction_id >= :lo", {"lo": OUTSIDE}
    )[0]["n"]
    assert int(leaked) == 0, "a malformed record was scored (over 64 KB JSON?)"
    record(
        "malformed stream input",
        f"{n_bad} malformed of {len(mixed)} records ({', '.join(f'{k}: {len(v)}' for k, v in bad.items())}), "
        f"{len(duplicates)} duplicate ids, 1 record over 1 MB ({type(refused.value).__name__})",
        before,
        after,
        ops_dropped_records=change,
    )


def test_throttled_producer_backs_off_and_delivers_everything_once(pipeline: Pipeline) -> None:
    transactions = pipeline.next_transactions(250)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    before = pipeline.snapshot(ids)
    client = boto3.client("kinesis")

    def throttle(params: dict, call: int) -> object:
        if call % 3 == 1:  # every third call throttled whole
            return error_response("ProvisionedThroughputExceededException")
        if call % 3 == 2:  # the next one partly: every fourth record of the batch refused
            return partial_put_records(params, lambda i: i % 4 == 0)
        return None

    with Injector(client, "kinesis", "PutRecords", throttle) as faults:
        stats = pipeline.write(transactions, client=client)
    assert faults.injected >= 2 and stats.retried > 0
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    assert after.ingested_rows == len(ids), "a throttled record was written twice"
    record(
        "Kinesis throttles the producer",
        f"{faults.injected} of {faults.calls} PutRecords calls faulted (whole-call throttling, "
        "or 1 in 4 records refused)",
        before,
        after,
        producer={"sent": stats.sent, "retried": stats.retried, "failed": stats.failed},
    )
