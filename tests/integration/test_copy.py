"""COPY from S3 (moto) into the emulator: formats, options, and a bad row failing the whole COPY."""

from __future__ import annotations

import gzip
import uuid
from datetime import datetime
from decimal import Decimal

import boto3
import pytest

from local.redshift.engine import Engine, RedshiftError

pytestmark = pytest.mark.integration

HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TX_AMOUNT,NOTE\n"
ROWS = [
    "1,2018-04-01 00:00:31,596,57.16,plain\n",
    '2,2018-04-01 00:02:10,4961,81.51,"quoted, with comma"\n',
    "3,2018-04-01 00:07:56,2,146.00,\n",
]
TABLE = "CREATE TABLE history (transaction_id bigint, tx_datetime timestamp, customer_id int, tx_amount decimal(9,2), note varchar(50))"


@pytest.fixture
def bucket(aws_endpoints):
    s3 = boto3.client("s3")
    name = f"copy-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def engine():
    eng = Engine(":memory:", auto_refresh_interval=None)
    eng.execute(TABLE)
    yield eng
    eng.close()


def put(bucket: str, key: str, text: str, gz: bool = False) -> None:
    body = gzip.compress(text.encode()) if gz else text.encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def test_copy_csv_with_header(engine, bucket):
    put(bucket, "history/part-0.csv", HEADER + "".join(ROWS))
    result = engine.execute(
        f"COPY history FROM 's3://{bucket}/history/part-0.csv' IAM_ROLE 'arn:aws:iam::1:role/r' "
        "CSV IGNOREHEADER 1 DATEFORMAT 'auto' TIMEFORMAT 'auto'"
    )
    assert result.rowcount == 3
    rows = engine.execute("SELECT * FROM history ORDER BY transaction_id").rows
    assert rows[0] == (1, datetime(2018, 4, 1, 0, 0, 31), 596, Decimal("57.16"), "plain")
    assert rows[1][4] == "quoted, with comma"
    assert rows[2][4] == ""  # an empty VARCHAR field loads as '' (not NULL) without EMPTYASNULL


def test_copy_prefix_gzip_and_delimiter(engine, bucket):
    piped = [r.replace(",", "|").replace('"quoted| with comma"', "no comma") for r in ROWS]
    put(bucket, "daily/2018-04-01.csv.gz", HEADER.replace(",", "|") + "".join(piped[:2]), gz=True)
    put(bucket, "daily/2018-04-02.csv.gz", HEADER.replace(",", "|") + piped[2], gz=True)
    result = engine.execute(
        f"COPY history (transaction_id, tx_datetime, customer_id, tx_amount, note) FROM 's3://{bucket}/daily/' "
        "IAM_ROLE default FORMAT AS CSV DELIMITER AS '|' IGNOREHEADER AS 1 GZIP EMPTYASNULL"
    )
    assert result.rowcount == 3
    assert engine.execute("SELECT count(*), count(note) FROM history").rows == [(3, 2)]


def test_bad_row_fails_the_whole_copy_with_line_and_reason(engine, bucket):
    engine.execute("INSERT INTO history (transaction_id) VALUES (100)")
    bad = [*ROWS[:2], "3,2018-04-01 00:07:56,not-a-number,146.00,x\n", *ROWS[2:]]
    put(bucket, "bad.csv", HEADER + "".join(bad))
    with pytest.raises(RedshiftError) as err:
        engine.execute(f"COPY history FROM 's3://{bucket}/bad.csv' IAM_ROLE default CSV IGNOREHEADER 1")
    message = err.value.message
    assert "Load into table 'history' failed" in message
    assert "line 4" in message  # the header is line 1
    assert "not-a-number" in message
    assert engine.execute("SELECT count(*) FROM history").rows == [(1,)]  # nothing of the COPY kept


def test_copy_inside_a_failed_batch_keeps_nothing(engine, bucket):
    put(bucket, "ok.csv", "".join(ROWS))
    with pytest.raises(RedshiftError, match='relation "missing" does not exist'):
        engine.execute_batch(
            [f"COPY history FROM 's3://{bucket}/ok.csv' IAM_ROLE default CSV", "SELECT * FROM missing"]
        )
    assert engine.execute("SELECT count(*) FROM history").rows == [(0,)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "COPY history FROM 's3://{bucket}/nothing-here' IAM_ROLE default CSV",
            "S3 prefix 'nothing-here' does not exist",
        ),
        ("COPY nope FROM 's3://{bucket}/x.csv' IAM_ROLE default CSV", 'relation "nope" does not exist'),
        (
            "COPY history FROM 's3://{bucket}/x.csv' IAM_ROLE default FORMAT AS PARQUET",
            "PARQUET is not supported",
        ),
        (
            "COPY history FROM 's3://{bucket}/x.csv' IAM_ROLE default CSV WIBBLE",
            'syntax error at or near "WIBBLE"',
        ),
        (
            "COPY history (nope) FROM 's3://{bucket}/x.csv' IAM_ROLE default CSV",
            'column "nope" of relation "history"',
        ),
    ],
)
def test_copy_errors_are_clear(engine, bucket, sql, message):
    put(bucket, "x.csv", "".join(ROWS))
    with pytest.raises(RedshiftError, match=message):
        engine.execute(sql.format(bucket=bucket))
