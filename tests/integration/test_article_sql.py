"""Every statement of the article's SQL (../shared/reference/article.sql) runs unchanged on the emulator,
and its views return what Redshift returns on a small, hand-checked data set (bugs of the original
included: the 1-day "count" is a sum of amounts, averages include the zeros of the CASE, terminal risk
divides integers, extract(dow) IN (1,7) is not the weekend).

Clock: 2018-10-10 12:00:00 (a Wednesday), so cast(getdate() AS date) - 37 = 2018-09-03.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal

import boto3
import pytest

from local.redshift.engine import Engine
from tests.conftest import SHARED

pytestmark = pytest.mark.integration

STREAM = "cust-payment-txn-stream"
NOW = datetime(2018, 10, 10, 12, 0, 0)

# (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT) on the stream
STREAM_TX = [
    (101, "2018-10-10 09:00:00", 1, 7, 50.00),
    (102, "2018-10-10 11:00:00", 2, 8, 150.00),
]
# history: id, datetime, customer, terminal, amount, fraud
HISTORY = [
    (1, "2018-10-05 10:00:00", 1, 7, "20.00", 0),
    (2, "2018-09-20 10:00:00", 1, 8, "30.00", 1),
    (3, "2018-08-01 10:00:00", 1, 7, "999.00", 0),  # older than 37 days: outside every window
    (4, "2018-10-09 08:00:00", 2, 8, "10.00", 0),
    (5, "2018-09-15 10:00:00", 2, 9, "5.00", 1),
    (6, "2018-09-16 10:00:00", 2, 9, "5.00", 0),
]
# The stub model: 1 above 100 in amount; weekend and night flags show up as 10s and 100s.
STUB = (
    "CREATE OR REPLACE TEMP MACRO fn_customer_cc_fd(amount, weekend, night, c1, c2, c3, c4, c5, c6, "
    "t1, t2, t3, t4, t5, t6) AS CASE WHEN amount > 100 THEN 1 ELSE 0 END + 10 * weekend + 100 * night"
)


def article_statements() -> list[str]:
    text = (SHARED / "reference" / "article.sql").read_text()
    return [s.strip() for s in re.split(r"(?m)^-- ;;$", text) if s.strip()]


@pytest.fixture
def stream(aws_endpoints):
    kinesis = boto3.client("kinesis")
    if STREAM in kinesis.list_streams()["StreamNames"]:
        kinesis.delete_stream(StreamName=STREAM)
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1})
    records = [
        {"Data": json.dumps({"TRANSACTION_ID": tid, "TX_DATETIME": ts, "CUSTOMER_ID": c, "TERMINAL_ID": t,
                             "TX_AMOUNT": amount, "TX_TIME_SECONDS": 1, "TX_TIME_DAYS": 0}).encode(),
         "PartitionKey": str(c)}
        for tid, ts, c, t, amount in STREAM_TX
    ]  # fmt: skip
    records.append({"Data": b"\x80 garbage", "PartitionKey": "x"})
    kinesis.put_records(StreamName=STREAM, Records=records)
    yield STREAM
    kinesis.delete_stream(StreamName=STREAM)


def test_article_sql_runs_unchanged_and_views_match_redshift(stream, tmp_path):
    statements = article_statements()
    assert len(statements) == 14
    with Engine(tmp_path / "article.duckdb", auto_refresh_interval=None) as engine:
        engine.set_clock(NOW)
        engine.connection().execute(STUB)
        results = {}
        for index, sql in enumerate(statements):
            results[index] = engine.execute(sql)
            if sql.startswith("CREATE TABLE cust_payment_tx_history"):
                for tid, ts, c, t, amount, fraud in HISTORY:
                    engine.execute(
                        "INSERT INTO cust_payment_tx_history (transaction_id, tx_datetime, customer_id, terminal_id,"
                        " tx_amount, tx_fraud) VALUES (:id, :ts, :c, :t, :amount, :fraud)",
                        {
                            "id": str(tid),
                            "ts": ts,
                            "c": str(c),
                            "t": str(t),
                            "amount": amount,
                            "fraud": str(fraud),
                        },
                    )
            if sql.startswith('CREATE TABLE public."customer_info"'):
                engine.execute(
                    "INSERT INTO customer_info VALUES (1, 'Chef', 'ann@example.com', 'Ann A', '555-0101', 'Reno', 'NV'),"
                    " (2, 'Pilot', 'bob@example.com', 'Bob B', '555-0102', 'Austin', 'TX')"
                )

        first10 = results[3]
        assert [c.name for c in first10.columns] == [
            "approximate_arrival_timestamp", "partition_key", "shard_id", "sequence_number", "transaction_id",
            "tx_datetime", "customer_id", "terminal_id", "tx_amount", "tx_time_seconds", "tx_time_days",
        ]  # fmt: skip
        assert sorted(r[4] for r in first10.rows) == [101, 102]
        assert results[4].rows == [(2,)]  # the garbage record is filtered by is_utf8 / can_json_parse
        assert results[6].rows == [(6,)]
        assert sorted(results[7].rows) == [("201808", 0, 1, 1), ("201809", 2, 1, 3), ("201810", 0, 2, 2)]
        assert results[9].rows == [(2,)]

        customers = engine.execute("SELECT * FROM customer_transformations ORDER BY customer_id")
        assert [(c.type_name, c.scale) for c in customers.columns[1:3]] == [("numeric", 2), ("numeric", 2)]
        D = Decimal
        assert customers.rows == [
            (1, D("50.00"), D("16.67"), D("70.00"), D("23.33"), D("100.00"), D("33.33")),
            (2, D("150.00"), D("37.50"), D("160.00"), D("40.00"), D("170.00"), D("42.50")),
        ]

        terminals = engine.execute("SELECT * FROM terminal_transformations ORDER BY terminal_id").rows
        assert terminals == [
            (7, 2, 0, 0, 0, 0, 0),
            (8, 2, 0, 0, 0, 1, 1),
            (9, 0, 0, 0, 0, 2, 0),  # 1 fraud / 2 transactions: integer division, as on Redshift
        ]

        predictions = engine.execute(
            "SELECT transaction_id, full_name, fraud_prediction FROM cust_payment_tx_fraud_predictions "
            "ORDER BY transaction_id"
        ).rows
        assert predictions == [(101, "Ann A", 0), (102, "Bob B", 1)]
        frauds = results[13]
        assert [
            r[frauds.columns.index(next(c for c in frauds.columns if c.name == "transaction_id"))]
            for r in frauds.rows
        ] == [102]
