"""The scoring SQL end to end on the local engine: migrations (streams from moto Kinesis, history by
COPY from moto S3), a model trained by CREATE MODEL, then the named queries the functions run.

History: a slice of the handbook's raw data (300 cards); the stream: the next day of those cards,
sent as Kinesis records with duplicates and malformed records mixed in; labels on the label stream.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from fraud_common.sqlfiles import fill, split_statements

from local.redshift.engine import Engine
from tests.conftest import SHARED

pytestmark = pytest.mark.integration

SQL = Path(__file__).resolve().parents[2] / "sql"
RAW = SHARED / "data" / "handbook_raw_2018-07-01_2018-08-14.csv.gz"
STREAM_DAY = "2018-08-14"
PLACEHOLDERS = {
    "TX_STREAM": "test-tx",
    "LABEL_STREAM": "test-labels",
    "IAM_ROLE": "default",
    "S3_BUCKET": "test-bucket",
    "MODEL_NAME": "fraud_model_v1",
    "MODEL_FUNCTION": "fn_fraud_v1",
    "MAX_RUNTIME": "600",
    "MAX_CELLS": "5000000",
}


def run_file(engine: Engine, path: Path, parameters: dict | None = None) -> list:
    return [engine.execute(sql, parameters) for sql in split_statements(fill(path.read_text(), PLACEHOLDERS))]


def query(engine: Engine, name: str, parameters: dict | None = None):
    (result,) = run_file(engine, SQL / "queries" / f"{name}.sql", parameters)
    return result


def rows(engine: Engine, sql: str) -> list[dict]:
    result = engine.execute(sql)
    return [dict(zip([c.name for c in result.columns], row, strict=True)) for row in result.rows]


def put_records(kinesis, stream: str, records: list[bytes], keys: list[str]) -> None:
    for start in range(0, len(records), 500):
        chunk = list(zip(records[start : start + 500], keys[start : start + 500], strict=True))
        response = kinesis.put_records(
            StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in chunk]
        )
        assert response["FailedRecordCount"] == 0


def tx_record(row: pd.Series) -> bytes:
    return json.dumps(
        {
            "TRANSACTION_ID": int(row.TRANSACTION_ID),
            "TX_DATETIME": row.TX_DATETIME,
            "CUSTOMER_ID": int(row.CUSTOMER_ID),
            "TERMINAL_ID": int(row.TERMINAL_ID),
            "TX_AMOUNT": float(row.TX_AMOUNT),
            "TX_TIME_SECONDS": int(row.TX_TIME_SECONDS),
            "TX_TIME_DAYS": int(row.TX_TIME_DAYS),
            "PRODUCED_AT": 1_700_000_000_000,
        }
    ).encode()


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    if not RAW.exists():
        pytest.skip(f"handbook data not available at {RAW}")
    raw = pd.read_csv(RAW)
    raw = raw[raw.CUSTOMER_ID < 300]
    history = raw[raw.TX_DATETIME < STREAM_DAY]
    stream = raw[raw.TX_DATETIME >= STREAM_DAY]
    return history, stream


@pytest.fixture(scope="module")
def warehouse(moto_server: str, data, tmp_path_factory) -> Iterator[tuple[Engine, object]]:
    """Migrations applied, history loaded and featurised, a READY model promoted, streams empty."""
    history, _ = data
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_KINESIS": moto_server,
            "AWS_ENDPOINT_URL_S3": moto_server,
        }.items():
            mp.setenv(key, value)
        kinesis = boto3.client("kinesis")
        s3 = boto3.client("s3")
        for stream in (PLACEHOLDERS["TX_STREAM"], PLACEHOLDERS["LABEL_STREAM"]):
            kinesis.create_stream(StreamName=stream, ShardCount=1)
        s3.create_bucket(Bucket=PLACEHOLDERS["S3_BUCKET"])
        body = io.BytesIO()
        with gzip.GzipFile(fileobj=body, mode="wb") as gz:
            gz.write(history.to_csv(index=False).encode())
        s3.put_object(Bucket="test-bucket", Key="history/transactions/part-0.csv.gz", Body=body.getvalue())
        customers = pd.DataFrame(
            {
                "customer_id": range(300),
                "job_title": "analyst",
                "email_address": [f"c{i}@example.com" for i in range(300)],
                "full_name": [f"Card Holder {i}" for i in range(300)],
                "phone_number": "+10000000000",
                "city": "Brussels",
                "state": "BE",
            }
        )
        body = io.BytesIO()
        with gzip.GzipFile(fileobj=body, mode="wb") as gz:
            gz.write(customers.to_csv(index=False).encode())
        s3.put_object(Bucket="test-bucket", Key="history/customer_info/part-0.csv.gz", Body=body.getvalue())

        engine = Engine(tmp_path_factory.mktemp("wh") / "warehouse.duckdb", auto_refresh_interval=None)
        for path in sorted((SQL / "migrations").glob("*.sql")):
            run_file(engine, path)
        assert engine.execute("SELECT count(*) FROM cust_payment_tx_history").rows[0][0] == len(history)
        featurised = engine.execute("SELECT count(*) FROM history_features").rows[0][0]
        assert featurised == len(history), "the migrations featurise the history COPY loaded"
        assert query(engine, "featurise_history").rowcount == 0, "nothing twice"
        engine.execute(
            "INSERT INTO model_registry (model_name, function_name, status) "
            "VALUES ('fraud_model_v1', 'fn_fraud_v1', 'training')"
        )
        query(engine, "create_model")
        state = wait_for_model(engine, "fraud_model_v1")
        assert state == "READY"
        query(engine, "promote_model", {"model_name": "fraud_model_v1"})
        try:
            yield engine, kinesis
        finally:
            engine.close()


def wait_for_model(engine: Engine, name: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = dict(engine.execute(f"SHOW MODEL {name}").rows[:20]).get("Model State")
        if state in ("READY", "FAILED") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def refresh(engine: Engine) -> None:
    for view in ("cust_payment_tx_stream", "cust_payment_label_stream", "cust_payment_tx_rejects"):
        engine.execute(f"REFRESH MATERIALIZED VIEW {view}")


def test_current_model_is_the_promoted_one(warehouse) -> None:
    engine, _ = warehouse
    (model,) = rows(engine, fill((SQL / "queries" / "current_model.sql").read_text(), PLACEHOLDERS))
    assert (model["model_name"], model["function_name"]) == ("fraud_model_v1", "fn_fraud_v1")


def test_scoring_exactly_once_with_duplicates_and_bad_records(warehouse, data) -> None:
    engine, kinesis = warehouse
    _, stream = data
    first, second = stream.iloc[:150], stream.iloc[150:300]
    records = [tx_record(r) for r in first.itertuples()]
    keys = [str(r.CUSTOMER_ID) for r in first.itertuples()]
    # a duplicate delivery of 20 transactions, a non-JSON record and a record missing its id
    records += [*records[:20], b"\xff\xfe not json", json.dumps({"TX_AMOUNT": 3}).encode()]
    keys += [*keys[:20], "x", "y"]
    put_records(kinesis, "test-tx", records, keys)
    refresh(engine)

    assert query(engine, "score_new_transactions", {"threshold": "0.5"}).rowcount == 150
    assert query(engine, "score_new_transactions", {"threshold": "0.5"}).rowcount == 0, "scored once"

    # more transactions, plus another copy of ones already scored
    records = [tx_record(r) for r in second.itertuples()] + records[:5]
    keys = [str(r.CUSTOMER_ID) for r in second.itertuples()] + keys[:5]
    put_records(kinesis, "test-tx", records, keys)
    refresh(engine)
    assert query(engine, "score_new_transactions", {"threshold": "0.5"}).rowcount == len(second)

    counts = rows(
        engine,
        "SELECT count(*) AS n, count(DISTINCT transaction_id) AS ids, min(model_version) AS v FROM fraud_scores",
    )[0]
    assert counts == {"n": 300, "ids": 300, "v": "fraud_model_v1"}
    dropped = {r["reason"]: r["records"] for r in rows(engine, "SELECT * FROM ops_dropped_records")}
    assert dropped == {"unparseable record": 1, "missing or invalid field": 1, "duplicate transaction id": 25}


def test_stream_features_equal_the_definition_on_history(warehouse, data) -> None:
    """A stream transaction gets the features the same transaction would get as history."""
    engine, _ = warehouse
    history, stream = data
    scored = pd.DataFrame(rows(engine, "SELECT * FROM fraud_scores ORDER BY transaction_id"))
    assert len(scored) > 0
    oracle = Engine(":memory:", auto_refresh_interval=None)
    try:
        from local.features import compute_history_features, prepare_history_warehouse

        prepare_history_warehouse(oracle)
        con = oracle.cursor()
        both = pd.concat([history, stream])
        con.register("both_df", both)
        con.execute("INSERT INTO cust_payment_tx_history SELECT * FROM both_df")
        con.close()
        compute_history_features(oracle)
        expected = pd.DataFrame(
            rows(
                oracle,
                "SELECT * FROM history_features WHERE tx_datetime >= '2018-08-14' ORDER BY transaction_id",
            )
        )
    finally:
        oracle.close()
    merged = scored.merge(expected, on="transaction_id", suffixes=("", "_hist"))
    assert len(merged) == len(scored)
    for column in (
        "customer_id_nb_tx_7day_window",
        "customer_id_avg_amount_30day_window",
        "amount_to_baseline_ratio",
        "customer_quartic_mean_amount_14day_to_baseline_ratio",
    ):
        assert (merged[column] - merged[f"{column}_hist"]).abs().max() < 1e-9, column
    # terminal windows end 7 days back: all of it is history, labels included
    for column in (
        "terminal_id_nb_tx_30day_window",
        "terminal_id_risk_30day_window",
        "terminal_id_compromise_day",
    ):
        assert (merged[column] - merged[f"{column}_hist"]).abs().max() < 1e-9, column


def test_outbox_holds_only_scores_above_threshold_with_true_reasons(warehouse) -> None:
    engine, _ = warehouse
    # a threshold some but not all scores reach: the top 5% of this small sample
    threshold = rows(
        engine, "SELECT PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY score) AS q FROM fraud_scores"
    )[0]["q"]
    enqueued = query(engine, "enqueue_alerts", {"threshold": str(threshold)}).rowcount
    above = rows(engine, f"SELECT count(*) AS n FROM fraud_scores WHERE score >= {threshold}")[0]["n"]
    assert enqueued == above > 0, "the sample has alerts to send"
    assert above < 300
    assert query(engine, "enqueue_alerts", {"threshold": str(threshold)}).rowcount == 0, "enqueued once"

    pending = rows(
        engine,
        fill((SQL / "queries" / "pending_alerts.sql").read_text(), PLACEHOLDERS).replace(":limit", "1000"),
    )
    assert len(pending) == enqueued
    assert all(p["score"] >= threshold and p["full_name"].startswith("Card Holder") for p in pending)
    scores = {r["transaction_id"]: r for r in rows(engine, "SELECT * FROM fraud_scores")}
    with_reasons = [p for p in pending if p["reasons"]]
    assert with_reasons, "alerts explain themselves"
    for alert in with_reasons:
        features = scores[alert["transaction_id"]]
        reasons = alert["reasons"].split("; ")
        assert 1 <= len(reasons) <= 3
        for reason in reasons:
            if reason.startswith("amount "):
                ratio = float(reason.split()[1].rstrip("x"))
                assert abs(ratio - features["amount_to_baseline_ratio"]) <= 0.05
            if reason.startswith("terminal had ") and "30 days" in reason:
                percent = int(reason.split()[2].rstrip("%"))
                assert abs(percent - 100 * features["terminal_id_risk_30day_window"]) <= 0.5
            if reason.startswith("card's other amounts in the last 14 days "):
                ratio = float(reason.split()[8].rstrip("x"))
                assert abs(ratio - features["customer_quartic_mean_amount_14day_to_baseline_ratio"]) <= 0.05

    sent = pending[0]["transaction_id"]
    result = query(engine, "mark_alert_sent", {"message_ids": json.dumps({str(sent): "msg-1"})})
    assert result.rowcount == 1
    assert query(engine, "mark_alert_sent", {"message_ids": json.dumps({str(sent): "msg-2"})}).rowcount == 0
    (row,) = rows(engine, f"SELECT status, message_id FROM fraud_alerts WHERE transaction_id = {sent}")
    assert row == {"status": "sent", "message_id": "msg-1"}
    if len(pending) >= 3:  # one statement marks a whole batch, and only the ids it names
        batch = {str(pending[1]["transaction_id"]): "msg-b", str(pending[2]["transaction_id"]): "msg-c"}
        assert query(engine, "mark_alert_sent", {"message_ids": json.dumps(batch)}).rowcount == 2
        marked = rows(engine, "SELECT transaction_id, message_id FROM fraud_alerts WHERE status = 'sent'")
        assert {str(r["transaction_id"]): r["message_id"] for r in marked} == {str(sent): "msg-1", **batch}


def test_labels_from_the_stream_reach_terminal_risk_and_training_set(warehouse, data) -> None:
    engine, kinesis = warehouse
    _, stream = data
    labelled = stream.iloc[:40]
    records = [
        json.dumps(
            {"TRANSACTION_ID": int(r.TRANSACTION_ID), "TX_FRAUD": int(r.TX_FRAUD), "LABELLED_AT": "x"}
        ).encode()
        for r in labelled.itertuples()
    ]
    put_records(kinesis, "test-labels", records, [str(r.TRANSACTION_ID) for r in labelled.itertuples()])
    refresh(engine)
    got = rows(
        engine, "SELECT count(*) AS n, sum(tx_fraud) AS frauds FROM training_set WHERE source = 'stream'"
    )[0]
    assert got["n"] == 40 and got["frauds"] == labelled.TX_FRAUD.sum()
    events = rows(
        engine, "SELECT count(*) AS n FROM tx_events WHERE source = 'stream' AND tx_fraud IS NOT NULL"
    )
    assert events[0]["n"] == 40


def test_article_analysis_queries(warehouse, data) -> None:
    engine, _ = warehouse
    history, _ = data
    months = {
        r["year_month"]: r
        for r in rows(engine, fill((SQL / "queries" / "monthly_fraud_counts.sql").read_text(), PLACEHOLDERS))
    }
    expected = history.assign(month=history.TX_DATETIME.str[:7].str.replace("-", ""))
    for month, group in expected.groupby("month"):
        assert (months[month]["fraud_tx"], months[month]["total_tx"]) == (group.TX_FRAUD.sum(), len(group))

    matrix = query(
        engine,
        "confusion_matrix",
        {"start_time": "2018-08-07 00:00:00", "end_time": "2018-08-14 00:00:00", "threshold": "0.5"},
    )
    cells = {(r[0], r[1]): r[2] for r in matrix.rows}
    in_period = history[(history.TX_DATETIME >= "2018-08-07") & (history.TX_DATETIME < "2018-08-14")]
    assert sum(cells.values()) == len(in_period)
    assert cells.get((1, 0), 0) + cells.get((1, 1), 0) == in_period.TX_FRAUD.sum()


def test_baseline_views_keep_the_article_bugs_on_the_simulated_clock(warehouse, data) -> None:
    engine, _ = warehouse
    history, _ = data
    engine.execute("SET emulator_clock TO '2018-08-13 23:00:00'")
    try:
        customers = {
            r["customer_id"]: r for r in rows(engine, "SELECT * FROM baseline_customer_transformations")
        }
    finally:
        engine.execute("RESET emulator_clock")
    today = history[history.TX_DATETIME.str.startswith("2018-08-13")]
    some = today.CUSTOMER_ID.iloc[0]
    spent = today[some == today.CUSTOMER_ID].TX_AMOUNT.sum()
    # the article's "count" of the day is the sum of the day's amounts (its bug, kept on purpose)
    assert float(customers[some]["customer_id_nb_tx_1day_window"]) == pytest.approx(spent)
