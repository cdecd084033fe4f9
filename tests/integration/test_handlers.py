"""The four handlers, in-process, with their events/ files, against the Redshift emulator's Data API
endpoint and moto (SNS, SQS, DynamoDB) over the wire.

The SQL here is a small stand-in for sql/ (a plain table instead of the streaming MV, a rule instead of
the model) so each test controls its data; the handlers and fraud_common run unchanged. The apply_sql
teardown and train_model's featurisation run the project's own sql/ (fixture `project_sql`).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from fraud_common import queries
from fraud_common.dataapi import DataApi
from fraud_common.settings import WarehouseSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
WORKGROUP = "card-fraud-wg"

MIGRATIONS = {
    "001_tables.sql": """
-- Stand-in for the streaming MV: the test inserts "stream" rows directly.
CREATE TABLE IF NOT EXISTS tx_source (
    transaction_id bigint, customer_id integer, terminal_id integer, tx_amount decimal(18, 2)
);
CREATE TABLE IF NOT EXISTS customer_info (customer_id bigint, full_name varchar(200), email_address varchar(100));
CREATE TABLE IF NOT EXISTS model_registry (
    model_name varchar(127), function_name varchar(127), status varchar(16), validation_metric float8,
    created_at timestamp DEFAULT getdate(), promoted_at timestamp
);
""",
    "002_outbox.sql": """
CREATE TABLE IF NOT EXISTS fraud_scores (
    transaction_id bigint, customer_id integer, terminal_id integer, tx_amount decimal(18, 2),
    score float8, prediction integer, model_version varchar(127), scored_at timestamp DEFAULT getdate()
);
CREATE TABLE IF NOT EXISTS fraud_alerts (
    transaction_id bigint, score float8, model_version varchar(127), status varchar(16) DEFAULT 'pending',
    message_id varchar(128), sent_at timestamp
);
""",
}
QUERIES = {
    "current_model": "SELECT model_name, function_name, validation_metric FROM model_registry "
    "WHERE status = 'promoted' ORDER BY promoted_at DESC LIMIT 1",
    # The stand-in stream (tx_source) is a plain table: nothing to refresh.
    "refresh_transactions": "SELECT 1",
    # The "model": amounts over 220 are fraud (the simulator's first scenario).
    "score_new_transactions": """INSERT INTO fraud_scores (transaction_id, customer_id, terminal_id, tx_amount, score, prediction, model_version)
SELECT s.transaction_id, s.customer_id, s.terminal_id, s.tx_amount,
       CASE WHEN s.tx_amount > 220 THEN 0.97 ELSE 0.02 END,
       CASE WHEN s.tx_amount > 220 AND 0.97 >= CAST(:threshold AS float8) THEN 1 ELSE 0 END,
       '${MODEL_NAME}'
FROM (SELECT DISTINCT transaction_id, customer_id, terminal_id, tx_amount FROM tx_source) s
LEFT JOIN fraud_scores f ON f.transaction_id = s.transaction_id
WHERE f.transaction_id IS NULL""",
    "enqueue_alerts": """INSERT INTO fraud_alerts (transaction_id, score, model_version, status)
SELECT f.transaction_id, f.score, f.model_version, 'pending'
FROM fraud_scores f LEFT JOIN fraud_alerts a ON a.transaction_id = f.transaction_id
WHERE a.transaction_id IS NULL AND f.score >= CAST(:threshold AS float8)""",
    "pending_alerts": """SELECT a.transaction_id, s.customer_id, s.terminal_id, s.tx_amount, a.score, a.model_version,
       c.full_name, c.email_address
FROM fraud_alerts a JOIN fraud_scores s ON s.transaction_id = a.transaction_id
LEFT JOIN customer_info c ON c.customer_id = s.customer_id
WHERE a.status = 'pending' ORDER BY a.transaction_id LIMIT :limit""",
    "mark_alert_sent": "UPDATE fraud_alerts SET status = 'sent', "
    "message_id = json_extract_path_text(:message_ids, CAST(transaction_id AS varchar)), sent_at = getdate() "
    "WHERE status = 'pending' AND json_extract_path_text(:message_ids, CAST(transaction_id AS varchar)) <> ''",
}


class Context:
    """The Lambda context's interface; the time left (`remaining_ms` from now) decides how many
    scoring cycles run before the handler stops."""

    def __init__(self, name: str, remaining_ms: int = 1_000) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "test"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(name: str) -> ModuleType:
    """functions/<name>/app.py as its own module (every function's file is called app.py)."""
    spec = importlib.util.spec_from_file_location(f"handler_{name}", REPO / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(name: str, **overrides: Any) -> dict[str, Any]:
    return {**json.loads((EVENTS / name).read_text()), **overrides}


@pytest.fixture
def sql_dir(tmp_path: Path) -> Path:
    for sub, files in (("migrations", MIGRATIONS), ("queries", {f"{k}.sql": v for k, v in QUERIES.items()})):
        (tmp_path / "sql" / sub).mkdir(parents=True)
        for file_name, text in files.items():
            (tmp_path / "sql" / sub / file_name).write_text(text)
    return tmp_path / "sql"


@pytest.fixture
def env(
    redshift_endpoint: str, aws_endpoints: str, sql_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    values = {
        "FRAUD_SQL_DIR": str(sql_dir),
        "REDSHIFT_WORKGROUP": WORKGROUP,
        "REDSHIFT_DATABASE": "dev",
        "STATEMENT_TIMEOUT_SECONDS": "30",
        "TX_STREAM": "cust-payment-txn-stream",
        "LABEL_STREAM": "cust-payment-label-stream",
        "S3_BUCKET": "card-fraud-data-123456789012-us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "CardFraudTest",
        "POLL_INTERVAL_SECONDS": "0",
        "STOP_MARGIN_SECONDS": "5",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def api(env: dict[str, str]) -> DataApi:
    return DataApi(WarehouseSettings(database="dev", workgroup=WORKGROUP, statement_timeout_s=30))


class CloudFormation(BaseHTTPRequestHandler):
    """Receives custom resource responses on the pre-signed URL, like CloudFormation's S3 bucket."""

    received: list[dict[str, Any]]

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cloudformation() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = HTTPServer(("127.0.0.1", 0), CloudFormation)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", server.received
    server.shutdown()


# ------------------------------------------------------------------------------------------ apply_sql


def test_apply_sql_applies_once_and_reapplies_cleanly(env, api, cloudformation) -> None:
    url, received = cloudformation
    app = load_handler("apply_sql")
    app.lambda_handler(event("apply_sql_create.json", ResponseURL=url), Context("apply-sql"))
    app.lambda_handler(event("apply_sql_update.json", ResponseURL=url), Context("apply-sql"))
    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS"]
    assert received[0]["Data"] == {"Applied": 2, "Skipped": 0, "LastApplied": "002_outbox.sql"}
    assert received[1]["Data"] == {"Applied": 0, "Skipped": 2, "LastApplied": ""}
    assert (
        received[0]["PhysicalResourceId"]
        == received[1]["PhysicalResourceId"]
        == f"sql-migrations:{WORKGROUP}/dev"
    )
    assert received[0]["RequestId"] == "6f1c2a7e-0000-4000-8000-000000000001"
    ledger = api.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert ledger == [{"version": 1, "name": "001_tables.sql"}, {"version": 2, "name": "002_outbox.sql"}]
    assert api.query("SELECT count(*) AS n FROM fraud_alerts") == [{"n": 0}]
    # Direct invoke (no RequestType) after everything is applied: nothing to do, no error.
    assert app.lambda_handler(event("apply_sql_direct.json"), Context("apply-sql"))["Applied"] == 0
    # Delete keeps the data.
    app.lambda_handler(event("apply_sql_delete.json", ResponseURL=url), Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS"
    assert api.query("SELECT count(*) AS n FROM schema_migrations") == [{"n": 2}]
    # ... unless the stack says otherwise: then sql/teardown.sql runs.
    (Path(env["FRAUD_SQL_DIR"]) / "teardown.sql").write_text(
        "DROP TABLE IF EXISTS fraud_alerts;\nDROP TABLE IF EXISTS schema_migrations;\n"
    )
    drop = event("apply_sql_delete.json", ResponseURL=url)
    drop["ResourceProperties"]["DropOnDelete"] = "true"
    app.lambda_handler(drop, Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS" and "dropped 2 statements" in received[-1]["Reason"]
    tables = api.query("SELECT table_name FROM information_schema.tables WHERE table_name = 'fraud_alerts'")
    assert tables == []


def test_apply_sql_reports_the_failing_file_and_redshift_error(env, api, sql_dir, cloudformation) -> None:
    url, received = cloudformation
    (sql_dir / "migrations" / "003_broken.sql").write_text(
        "CREATE TABLE IF NOT EXISTS fine (id int);\nINSERT INTO fine SELECT id FROM no_such_table;\n"
    )
    app = load_handler("apply_sql")
    app.lambda_handler(event("apply_sql_create.json", ResponseURL=url), Context("apply-sql"))
    assert received[0]["Status"] == "FAILED"
    assert received[0]["Reason"].startswith("003_broken.sql: ")
    assert 'relation "no_such_table" does not exist' in received[0]["Reason"]
    # The files before it are recorded; the broken one is not, so a fixed file applies next time.
    assert [r["version"] for r in api.query("SELECT version FROM schema_migrations ORDER BY version")] == [
        1,
        2,
    ]
    (sql_dir / "migrations" / "003_broken.sql").write_text("CREATE TABLE IF NOT EXISTS fine (id int);\n")
    app.lambda_handler(event("apply_sql_update.json", ResponseURL=url), Context("apply-sql"))
    assert received[1]["Status"] == "SUCCESS" and received[1]["Data"]["LastApplied"] == "003_broken.sql"


def test_apply_sql_refuses_an_edited_applied_migration(env, sql_dir, cloudformation) -> None:
    url, received = cloudformation
    app = load_handler("apply_sql")
    app.lambda_handler(event("apply_sql_create.json", ResponseURL=url), Context("apply-sql"))
    path = sql_dir / "migrations" / "001_tables.sql"
    path.write_text(path.read_text() + "\nCREATE TABLE IF NOT EXISTS sneaky (id int);\n")
    app.lambda_handler(event("apply_sql_update.json", ResponseURL=url), Context("apply-sql"))
    assert received[1]["Status"] == "FAILED"
    assert received[1]["Reason"].startswith("001_tables.sql: changed after it was applied")


# ------------------------------------------------------------------- apply_sql with the project's sql/

# Every object sql/migrations creates, by kind (sql/README.md's objects, the ledger, the external schemas).
TABLES = (
    "cust_payment_tx_history",
    "customer_info",
    "model_registry",
    "fraud_alerts",
    "history_features",
    "fraud_scores",
    "schema_migrations",
)
STREAMING_MVS = ("cust_payment_tx_stream", "cust_payment_label_stream", "cust_payment_tx_rejects")
VIEWS = (
    "stream_transactions",
    "stream_labels",
    "tx_events",
    "feature_targets",
    "tx_features",
    "training_set",
    "ops_ingestion_lag",
    "ops_scoring_lag",
    "ops_dropped_records",
    "baseline_customer_transformations",
    "baseline_terminal_transformations",
)
EXTERNAL_SCHEMAS = ("kinesis_labels", "kinesis_tx")
HISTORY_COLUMNS = (
    "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,"
    "TX_FRAUD,TX_FRAUD_SCENARIO"
)


def history_rows(first_id: int, first_day: int, days: int) -> list[str]:
    """15 transactions a day over 5 cards and 4 terminals from 2018-04-01 + first_day (CREATE MODEL
    wants at least 500 labelled rows); card 3 is compromised every fifth day (amounts over 220, fraud)."""
    rows = []
    for day in range(first_day, first_day + days):
        for k in range(15):
            customer, fraud = k % 5, int(k % 5 == 3 and day % 5 == 0)
            seconds = day * 86400 + (1 + k) * 3600 + k * 60
            when = datetime(2018, 4, 1) + timedelta(seconds=seconds)
            amount = 250 + k if fraud else 20 + (day * 7 + k * 13) % 60
            rows.append(
                f"{first_id + len(rows)},{when:%Y-%m-%d %H:%M:%S},{customer},{(k + day) % 4},{amount}.00,"
                f"{seconds},{day},{fraud},{fraud}"
            )
    return rows


def gzip_csv(header: str, rows: list[str]) -> bytes:
    return gzip.compress(("\n".join([header, *rows]) + "\n").encode())


@pytest.fixture
def project_sql(env, aws_endpoints, monkeypatch) -> dict[str, Any]:
    """The project's own sql/ over fresh Kinesis streams and a bucket holding 40 days of history."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "TX_STREAM": f"tx-{suffix}",
        "LABEL_STREAM": f"labels-{suffix}",
        "S3_BUCKET": f"fraud-data-{suffix}",
        "MODEL_MAX_RUNTIME": "600",
        "MODEL_MAX_CELLS": "100000",
    }
    for key, value in {**names, "FRAUD_SQL_DIR": str(REPO / "sql")}.items():
        monkeypatch.setenv(key, value)
    kinesis, s3 = boto3.client("kinesis"), boto3.client("s3")
    for stream in (names["TX_STREAM"], names["LABEL_STREAM"]):
        kinesis.create_stream(StreamName=stream, ShardCount=1)
    s3.create_bucket(Bucket=names["S3_BUCKET"])
    history = history_rows(first_id=0, first_day=0, days=40)
    s3.put_object(
        Bucket=names["S3_BUCKET"],
        Key="history/transactions/part-0.csv.gz",
        Body=gzip_csv(HISTORY_COLUMNS, history),
    )
    customers = [f"{c},analyst,c{c}@example.com,Card Holder {c},+10000000000,Brussels,BE" for c in range(5)]
    s3.put_object(
        Bucket=names["S3_BUCKET"],
        Key="history/customer_info/part-0.csv.gz",
        Body=gzip_csv("customer_id,job_title,email_address,full_name,phone_number,city,state", customers),
    )
    return {"history": len(history), **names}


def warehouse_objects(api: DataApi) -> set[str]:
    """The migrations' tables, views, streaming MVs and external schemas that exist."""
    names = ", ".join(f"'{n}'" for n in (*TABLES, *STREAMING_MVS, *VIEWS))
    relations = api.query(f"SELECT table_name FROM information_schema.tables WHERE table_name IN ({names})")
    schemas = api.query(
        "SELECT schema_name FROM redshift_sys.external_schemas "  # the emulator's catalog of them
        f"WHERE schema_name IN ({', '.join(repr(n) for n in EXTERNAL_SCHEMAS)})"
    )
    return {r["table_name"] for r in relations} | {r["schema_name"] for r in schemas}


def test_delete_keeps_the_warehouse_unless_the_stack_drops_it(project_sql, api, cloudformation) -> None:
    url, received = cloudformation
    app = load_handler("apply_sql")
    app.lambda_handler(event("apply_sql_create.json", ResponseURL=url), Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS", received[-1]["Reason"]
    migrations = len(list((REPO / "sql" / "migrations").glob("*.sql")))
    assert received[-1]["Data"]["Applied"] == migrations
    everything = {*TABLES, *STREAMING_MVS, *VIEWS, *EXTERNAL_SCHEMAS}
    assert warehouse_objects(api) == everything
    featurised = project_sql["history"]
    assert api.query("SELECT count(*) AS n FROM history_features") == [{"n": featurised}]

    # Delete without the flag (the default): every object and every row stays.
    app.lambda_handler(event("apply_sql_delete.json", ResponseURL=url), Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS" and "dropped 0 statements" in received[-1]["Reason"]
    assert warehouse_objects(api) == everything
    assert api.query("SELECT count(*) AS n FROM cust_payment_tx_history") == [{"n": project_sql["history"]}]
    assert api.query("SELECT count(*) AS n FROM history_features") == [{"n": featurised}]

    # DropWarehouseObjectsOnDelete=true: sql/teardown.sql drops them all, the ledger included.
    drop = event("apply_sql_delete.json", ResponseURL=url)
    drop["ResourceProperties"]["DropOnDelete"] = "true"
    app.lambda_handler(drop, Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS", received[-1]["Reason"]
    assert warehouse_objects(api) == set()
    # A second Delete (CloudFormation retries) finds nothing and still succeeds (IF EXISTS).
    app.lambda_handler(drop, Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS", received[-1]["Reason"]

    # A new stack applies every migration from scratch: nothing was left behind to collide with
    # (CREATE MATERIALIZED VIEW has no IF NOT EXISTS) and the history is loaded once, not twice.
    app.lambda_handler(event("apply_sql_create.json", ResponseURL=url), Context("apply-sql"))
    assert received[-1]["Status"] == "SUCCESS", received[-1]["Reason"]
    assert received[-1]["Data"]["Applied"] == migrations
    assert api.query("SELECT count(*) AS n FROM cust_payment_tx_history") == [{"n": project_sql["history"]}]


def test_train_model_featurises_history_loaded_after_deploy_first(project_sql, api) -> None:
    load_handler("apply_sql").lambda_handler(event("apply_sql_direct.json"), Context("apply-sql"))
    before = project_sql["history"]
    assert api.query("SELECT count(*) AS n FROM history_features") == [{"n": before}]
    # Nothing new: featurise_history adds nothing (its targets start after the last featurised row).
    assert queries.run(api, "featurise_history", {}).rows_affected == 0

    # Ten more days of history arrive after the deploy (a later load).
    later = history_rows(first_id=100_000, first_day=40, days=10)
    api.execute(
        "INSERT INTO cust_payment_tx_history VALUES "
        + ", ".join("({}, '{}', {}, {}, {}, {}, {}, {}, {})".format(*row.split(",")) for row in later)
    )
    app = load_handler("train_model")
    started = app.lambda_handler(event("train_model_start.json"), Context("train-model"))["started"]
    assert started is not None
    assert api.query("SELECT count(*) AS n FROM history_features") == [{"n": before + len(later)}]
    ids = api.query(
        "SELECT count(DISTINCT transaction_id) AS n FROM history_features WHERE transaction_id >= 100000"
    )
    assert ids == [{"n": len(later)}]
    # Run twice, it adds nothing: the rows it featurised are no longer targets.
    assert queries.run(api, "featurise_history", {}).rows_affected == 0
    assert api.query("SELECT count(*) AS n FROM history_features") == [{"n": before + len(later)}]
    # ... and the version it started trains (on them) to the end.
    assert settle(app)["promoted"] == [started]


# ------------------------------------------------------------------------------------ score_and_alert


@pytest.fixture
def warehouse(env, api, cloudformation) -> DataApi:
    """Migrations applied (through the handler), a promoted model, customers and stream rows."""
    load_handler("apply_sql").lambda_handler(event("apply_sql_direct.json"), Context("apply-sql"))
    api.execute(
        "INSERT INTO model_registry (model_name, function_name, status, validation_metric, promoted_at) "
        "VALUES ('fraud_model_v1', 'fn_fraud_score_v1', 'promoted', 0.9, getdate())"
    )
    api.execute(
        "INSERT INTO customer_info VALUES (17, 'Jane Doe', 'jane@example.com'), (23, 'Li Wei', 'li@example.com')"
    )
    # 12 frauds (> 220) among 20 transactions; transaction 100 arrives twice on the stream.
    rows = ", ".join(
        f"({100 + i}, {17 if i % 2 else 23}, {i}, {300 + i if i < 12 else 20 + i})" for i in range(20)
    )
    api.execute(f"INSERT INTO tx_source VALUES {rows}, (100, 23, 0, 300)")
    return api


@pytest.fixture
def alert_topic(aws_endpoints: str, monkeypatch) -> tuple[str, str]:
    """The alert topic with its SQS subscription (raw delivery, as in the template)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"actions-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return topic, queue_url


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs, messages = boto3.client("sqs"), []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_score_and_alert_scores_once_and_publishes_each_alert_once(
    warehouse, alert_topic, monkeypatch
) -> None:
    topic, queue_url = alert_topic
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
    app = load_handler("score_and_alert")
    first = app.lambda_handler(event("score_and_alert_tick.json"), Context("score-and-alert"))
    assert first["cycles"] == 1
    assert first["totals"] == {
        "scored": 20,
        "enqueued": 12,
        "published": 12,
        "failed": 0,
        "model": "fraud_model_v1",
    }
    messages = drain(queue_url)
    assert len(messages) == 12
    bodies = sorted((json.loads(m["Body"]) for m in messages), key=lambda b: b["transaction_id"])
    assert [b["transaction_id"] for b in bodies] == list(range(100, 112))
    assert bodies[1]["full_name"] == "Jane Doe" and bodies[1]["model_version"] == "fraud_model_v1"
    attributes = messages[0]["MessageAttributes"]
    assert attributes["score"] == {"StringValue": "0.97", "DataType": "Number"}
    assert set(attributes) >= {"score", "amount", "customer_id", "transaction_id", "model_version"}

    # A later invocation (several cycles this time) finds nothing new: each transaction scored once.
    second = app.lambda_handler(
        event("score_and_alert_tick.json"), Context("score-and-alert", remaining_ms=7_000)
    )
    assert second["cycles"] >= 1 and second["totals"]["scored"] == 0 and second["totals"]["published"] == 0
    assert drain(queue_url) == []
    counts = warehouse.query(
        "SELECT count(*) AS scores, count(DISTINCT transaction_id) AS ids FROM fraud_scores"
    )
    assert counts == [{"scores": 20, "ids": 20}]
    assert warehouse.query(
        "SELECT count(*) AS n FROM fraud_alerts WHERE status = 'sent' AND message_id IS NOT NULL"
    ) == [{"n": 12}]


def test_sns_failure_leaves_alerts_pending_and_a_later_run_sends_them(
    warehouse, alert_topic, monkeypatch
) -> None:
    topic, queue_url = alert_topic
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic + "-deleted")  # SNS answers NotFound for every batch
    failing = load_handler("score_and_alert")
    outcome = failing.lambda_handler(event("score_and_alert_tick.json"), Context("score-and-alert"))
    assert outcome["totals"]["enqueued"] == 12
    assert (outcome["totals"]["published"], outcome["totals"]["failed"]) == (0, 12)
    assert warehouse.query("SELECT count(*) AS n FROM fraud_alerts WHERE status = 'pending'") == [{"n": 12}]

    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)  # SNS is back (new cold start reads the settings)
    recovered = load_handler("score_and_alert").lambda_handler(
        event("score_and_alert_tick.json"), Context("s")
    )
    assert recovered["totals"] == {
        "scored": 0,
        "enqueued": 0,
        "published": 12,
        "failed": 0,
        "model": "fraud_model_v1",
    }
    assert len(drain(queue_url)) == 12
    assert warehouse.query("SELECT count(*) AS n FROM fraud_alerts WHERE status = 'pending'") == [{"n": 0}]


def test_score_and_alert_without_a_promoted_model_still_publishes_pending(
    warehouse, alert_topic, monkeypatch
) -> None:
    topic, queue_url = alert_topic
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
    warehouse.execute("UPDATE model_registry SET status = 'retired'")
    warehouse.execute(
        "INSERT INTO fraud_scores (transaction_id, customer_id, terminal_id, tx_amount, score, prediction, model_version) VALUES (999, 17, 1, 500, 0.99, 1, 'old')"
    )
    warehouse.execute(
        "INSERT INTO fraud_alerts (transaction_id, score, model_version, status) VALUES (999, 0.99, 'old', 'pending')"
    )
    outcome = load_handler("score_and_alert").lambda_handler(event("score_and_alert_tick.json"), Context("s"))
    assert outcome["totals"] == {"scored": 0, "enqueued": 0, "published": 1, "failed": 0, "model": None}
    assert [json.loads(m["Body"])["transaction_id"] for m in drain(queue_url)] == [999]


def test_score_and_alert_names_a_missing_setting(env, monkeypatch) -> None:
    monkeypatch.delenv("ALERT_TOPIC_ARN", raising=False)
    with pytest.raises(Exception, match="ALERT_TOPIC_ARN"):
        load_handler("score_and_alert").lambda_handler(event("score_and_alert_tick.json"), Context("s"))


# ---------------------------------------------------------------------------------------- act_on_alert


@pytest.fixture
def cases_table(aws_endpoints: str, monkeypatch) -> str:
    """The cases table, with the template's key schema."""
    cases = f"cases-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(
        TableName=cases,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    monkeypatch.setenv("CASES_TABLE", cases)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CardFraudTest")
    return cases


def test_duplicate_delivery_locks_the_card_once(cases_table: str) -> None:
    app = load_handler("act_on_alert")
    response = app.lambda_handler(event("act_on_alert_batch_with_duplicate.json"), Context("act-on-alert"))
    assert response == {"batchItemFailures": []}
    # Redelivered again in a later batch (e.g. score_and_alert crashed before marking it sent).
    again = app.lambda_handler(event("act_on_alert_batch_with_duplicate.json"), Context("act-on-alert"))
    assert again == {"batchItemFailures": []}
    table = boto3.resource("dynamodb").Table(cases_table)
    card = table.get_item(Key={"pk": "CARD#17"})["Item"]
    assert card["locked"] is True and card["lock_count"] == 1 and card["transaction_ids"] == {"1000001"}
    assert table.get_item(Key={"pk": "CASE#1000001"})["Item"]["status"] == "open"
    assert table.get_item(Key={"pk": "CARD#23"})["Item"]["lock_count"] == 1
    assert len(table.scan()["Items"]) == 4  # two cases, two cards


def test_a_redelivery_writes_the_case_once_and_locks_once(cases_table: str) -> None:
    """The conditional case write alone absorbs a redelivery: the case keeps its first opened_at and the
    card its single lock, with no other table involved."""
    app = load_handler("act_on_alert")
    app.lambda_handler(event("act_on_alert_batch_with_duplicate.json"), Context("act-on-alert"))
    table = boto3.resource("dynamodb").Table(cases_table)
    first = {item["pk"]: item for item in table.scan()["Items"]}
    assert app.lambda_handler(event("act_on_alert_batch_with_duplicate.json"), Context("a")) == {
        "batchItemFailures": []
    }
    assert {item["pk"]: item for item in table.scan()["Items"]} == first
    assert first["CARD#17"]["lock_count"] == 1 and first["CASE#1000001"]["opened_at"]


def test_poison_message_fails_alone(cases_table: str) -> None:
    response = load_handler("act_on_alert").lambda_handler(
        event("act_on_alert_batch_with_poison.json"), Context("a")
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "0c6f3a52-0005-4a4b-9a52-000000000005"}]}
    card = boto3.resource("dynamodb").Table(cases_table).get_item(Key={"pk": "CARD#31"})["Item"]
    assert card["locked"] is True


# ----------------------------------------------------------------------------------------- train_model

REGISTRY_QUERIES = (
    "current_model",
    "register_model",
    "models_in_training",
    "set_model_status",
    "record_model_metric",
    "retire_promoted_models",
    "promote_model",
)
CREATE_MODEL = """CREATE MODEL ${MODEL_NAME}
FROM (SELECT x1, x2, y FROM training_rows)
TARGET y
FUNCTION ${MODEL_FUNCTION}
IAM_ROLE ${IAM_ROLE}
AUTO OFF
MODEL_TYPE XGBOOST
OBJECTIVE 'reg:logistic'
PREPROCESSORS 'none'
HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10')
SETTINGS (S3_BUCKET '${S3_BUCKET}', MAX_RUNTIME ${MAX_RUNTIME})"""


# Stand-in for featurise_history: copy the loaded rows not featurised yet into the training table.
FEATURISE_LOADED_ROWS = """INSERT INTO training_rows
SELECT l.id, l.x1, l.x2, l.y FROM loaded_rows l LEFT JOIN training_rows t ON t.id = l.id WHERE t.id IS NULL"""


@pytest.fixture
def training_warehouse(env, api, sql_dir) -> DataApi:
    """The project's own registry queries (sql/queries) over a small, learnable training table."""
    for name in REGISTRY_QUERIES:
        (sql_dir / "queries" / f"{name}.sql").write_text(
            (REPO / "sql" / "queries" / f"{name}.sql").read_text()
        )
    (sql_dir / "queries" / "create_model.sql").write_text(CREATE_MODEL)
    (sql_dir / "queries" / "featurise_history.sql").write_text(FEATURISE_LOADED_ROWS)
    load_handler("apply_sql").lambda_handler(event("apply_sql_direct.json"), Context("apply-sql"))
    rows = ", ".join(
        f"({i}, {(i * 37 % 100) / 100}, {(i * 11 % 100) / 100}, {int((i * 37 % 100) > 70)})"
        for i in range(600)
    )
    for table in ("training_rows", "loaded_rows"):
        api.execute(f"CREATE TABLE {table} (id integer, x1 float8, x2 float8, y integer)")
    # 500 rows already featurised, 100 loaded since (featurise_history's job before training).
    api.execute(f"INSERT INTO loaded_rows VALUES {rows}")
    api.execute("INSERT INTO training_rows SELECT * FROM loaded_rows WHERE id < 500")
    return api


def settle(app: ModuleType, timeout_s: float = 120) -> dict[str, Any]:
    """Run the scheduled check until no version is training any more (CREATE MODEL is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = app.lambda_handler(event("train_model_check.json"), Context("train-model"))
        if not outcome["training"] or time.monotonic() > deadline:
            return outcome
        time.sleep(0.5)


def test_train_model_starts_versions_and_promotes_ready_ones(training_warehouse, monkeypatch) -> None:
    api = training_warehouse
    app = load_handler("train_model")
    started = app.lambda_handler(event("train_model_start.json"), Context("train-model"))
    first = started["started"]
    assert re.fullmatch(r"fraud_model_v\d{17}", first)
    assert api.query("SELECT count(*) AS n FROM training_rows") == [{"n": 600}]  # featurised first
    # A second start does not pile up versions: while the first trains it starts none; if the first
    # already finished (tiny data trains fast), that same tick promoted it before starting the next.
    second = app.lambda_handler(event("train_model_start.json"), Context("train-model"))["started"]
    if second not in (None, first):
        status = api.query("SELECT status FROM model_registry WHERE model_name = :m", {"m": first})
        assert status == [{"status": "promoted"}]
    latest = first if second in (None, first) else second
    outcome = settle(app)
    assert outcome["promoted"] == [latest] and outcome["failed"] == []
    current = api.query(
        "SELECT model_name, function_name, status, validation_metric FROM model_registry "
        "WHERE status = 'promoted'"
    )
    assert len(current) == 1 and current[0]["model_name"] == latest
    assert current[0]["function_name"] == latest.replace("fraud_model", "fn_fraud_score")
    assert current[0]["validation_metric"] is not None
    scores = api.query(
        f"SELECT {current[0]['function_name']}(x1, x2) AS p FROM training_rows ORDER BY x1 DESC LIMIT 1"
    )
    assert 0.5 < scores[0]["p"] <= 1.0  # the promoted function is callable and has learnt the rule

    # A broken CREATE MODEL: the version ends up failed and the promoted one stays. The emulator may
    # reject it on submission (recorded at once) or fail it later (SHOW MODEL never knows it: failed
    # once the grace period, here zero, has passed).
    monkeypatch.setattr("fraud_common.training.CREATE_GRACE_S", 0)
    (Path(os.environ["FRAUD_SQL_DIR"]) / "queries" / "create_model.sql").write_text(
        CREATE_MODEL.replace("TARGET y", "TARGET no_such_column")
    )
    try:
        app.lambda_handler(event("train_model_start.json"), Context("train-model"))
    except Exception as exc:
        assert "no_such_column" in str(exc)
    outcome = settle(app)
    assert outcome["promoted"] == [] and outcome["training"] == []
    statuses = {
        r["model_name"]: r["status"] for r in api.query("SELECT model_name, status FROM model_registry")
    }
    assert statuses[latest] == "promoted"
    assert sorted(v for v in statuses.values() if v != "retired") == ["failed", "promoted"]


def test_train_model_registers_nothing_when_featurising_fails(training_warehouse, sql_dir) -> None:
    (sql_dir / "queries" / "featurise_history.sql").write_text(
        FEATURISE_LOADED_ROWS.replace("loaded_rows", "no_such_rows")
    )
    with pytest.raises(Exception, match="no_such_rows"):
        load_handler("train_model").lambda_handler(event("train_model_start.json"), Context("train-model"))
    assert training_warehouse.query("SELECT count(*) AS n FROM model_registry") == [{"n": 0}]
    assert training_warehouse.query("SELECT count(*) AS n FROM training_rows") == [{"n": 500}]


def test_train_model_rejects_an_unknown_action(env) -> None:
    with pytest.raises(ValueError, match="unknown train_model action"):
        load_handler("train_model").lambda_handler({"action": "drop everything"}, Context("train-model"))
