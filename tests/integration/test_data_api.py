"""The Data API endpoint driven by an unchanged boto3 `redshift-data` client over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.redshift.engine import Engine
from local.redshift.server import start_server

pytestmark = pytest.mark.integration

WORKGROUP = "fraud-wg"
DONE = ("FINISHED", "FAILED", "ABORTED")
# 100 rows cross-joined six times: 10^12 rows, runs until cancelled.
ENDLESS_SQL = (
    "INSERT INTO sink SELECT COUNT(*) FROM big a CROSS JOIN big b CROSS JOIN big c "
    "CROSS JOIN big d CROSS JOIN big e CROSS JOIN big f"
)


@pytest.fixture
def client(redshift_endpoint: str) -> Any:
    return boto3.client("redshift-data")  # endpoint from AWS_ENDPOINT_URL_REDSHIFT_DATA


def wait(client: Any, statement_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        desc = client.describe_statement(Id=statement_id)
        if desc["Status"] in DONE:
            return desc
        assert time.monotonic() < deadline, f"statement still {desc['Status']}"
        time.sleep(0.005)


def run(client: Any, sql: str, **kwargs: Any) -> dict[str, Any]:
    statement_id = client.execute_statement(Sql=sql, WorkgroupName=WORKGROUP, Database="dev", **kwargs)["Id"]
    return wait(client, statement_id)


def run_ok(client: Any, sql: str, **kwargs: Any) -> dict[str, Any]:
    desc = run(client, sql, **kwargs)
    assert desc["Status"] == "FINISHED", desc.get("Error")
    return desc


def rows(client: Any, statement_id: str) -> list[list[Any]]:
    """All records of a result, each field reduced to its single value (None for isNull)."""
    pages = client.get_paginator("get_statement_result").paginate(Id=statement_id)
    return [
        [None if "isNull" in f else next(iter(f.values())) for f in rec]
        for p in pages
        for rec in p["Records"]
    ]


def query(client: Any, sql: str, **kwargs: Any) -> list[list[Any]]:
    return rows(client, run_ok(client, sql, **kwargs)["Id"])


def make_endless_tables(client: Any) -> None:
    run_ok(client, "CREATE TABLE big (x INT)")
    run_ok(client, "INSERT INTO big VALUES " + ",".join(f"({i})" for i in range(100)))
    run_ok(client, "CREATE TABLE sink (n BIGINT)")


def test_create_insert_select_with_parameters_and_typed_records(client: Any) -> None:
    run_ok(
        client,
        "CREATE TABLE tx (id INT, customer VARCHAR(20), amount DECIMAL(10,2), score FLOAT8, fraud BOOLEAN, at TIMESTAMP)",
    )
    run_ok(
        client,
        "INSERT INTO tx VALUES (1, 'alice', 12.50, 0.25, false, '2024-01-01 10:00:00'),"
        " (2, NULL, 99.99, 0.75, true, '2024-01-02 00:00:00'), (3, 'carol', 1.00, 0.5, false, '2024-01-03 12:30:00')",
    )
    desc = run_ok(
        client,
        "SELECT id, customer, amount, score, fraud, at FROM tx WHERE amount > :min_amount AND id <> :skip ORDER BY id",
        Parameters=[{"name": "min_amount", "value": "5"}, {"name": "skip", "value": "3"}],
    )
    assert desc["HasResultSet"] is True
    assert desc["ResultRows"] == 2
    assert desc["Duration"] > 0
    assert desc["QueryParameters"] == [{"name": "min_amount", "value": "5"}, {"name": "skip", "value": "3"}]
    result = client.get_statement_result(Id=desc["Id"])
    assert result["TotalNumRows"] == 2
    assert "NextToken" not in result
    assert [c["name"] for c in result["ColumnMetadata"]] == [
        "id",
        "customer",
        "amount",
        "score",
        "fraud",
        "at",
    ]
    assert [c["typeName"] for c in result["ColumnMetadata"]] == [
        "int4",
        "varchar",
        "numeric",
        "float8",
        "bool",
        "timestamp",
    ]
    assert result["ColumnMetadata"][2]["precision"] == 10 and result["ColumnMetadata"][2]["scale"] == 2
    assert result["Records"] == [
        [
            {"longValue": 1},
            {"stringValue": "alice"},
            {"stringValue": "12.50"},
            {"doubleValue": 0.25},
            {"booleanValue": False},
            {"stringValue": "2024-01-01 10:00:00"},
        ],
        [
            {"longValue": 2},
            {"isNull": True},
            {"stringValue": "99.99"},
            {"doubleValue": 0.75},
            {"booleanValue": True},
            {"stringValue": "2024-01-02 00:00:00"},
        ],
    ]


def test_execute_returns_before_the_statement_finishes(client: Any) -> None:
    make_endless_tables(client)
    started = time.monotonic()
    out = client.execute_statement(Sql=ENDLESS_SQL, WorkgroupName=WORKGROUP, Database="dev")
    assert time.monotonic() - started < 5
    assert {"Id", "CreatedAt", "Database", "WorkgroupName"} <= out.keys()
    desc = client.describe_statement(Id=out["Id"])
    assert desc["Status"] in ("SUBMITTED", "PICKED", "STARTED")
    assert desc["Duration"] == -1 and desc["ResultRows"] == -1
    client.cancel_statement(Id=out["Id"])


def test_paging_over_a_result_larger_than_one_page(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "paging.duckdb")
    with start_server(engine, page_bytes=2048) as handle:
        client = boto3.client("redshift-data", endpoint_url=handle.url)
        run_ok(client, "CREATE TABLE numbers (n INT, label VARCHAR(30))")
        values = ",".join(f"({i}, 'row number {i}')" for i in range(300))
        run_ok(client, f"INSERT INTO numbers VALUES {values}")
        desc = run_ok(client, "SELECT n, label FROM numbers ORDER BY n")
        first = client.get_statement_result(Id=desc["Id"])
        assert first["TotalNumRows"] == 300
        assert 0 < len(first["Records"]) < 300
        assert "NextToken" in first
        # Each page stays within the page size (a page holds at least one record).
        assert (
            len(json.dumps(first["Records"], separators=(",", ":"))) <= 2048 + 2 * len(first["Records"]) + 2
        )
        got = rows(client, desc["Id"])
        assert got == [[i, f"row number {i}"] for i in range(300)]
        # NextToken belongs to its statement: another statement's token is refused.
        other = run_ok(client, "SELECT n FROM numbers")
        with pytest.raises(client.exceptions.ValidationException, match="NextToken"):
            client.get_statement_result(Id=other["Id"], NextToken=first["NextToken"])
    engine.close()


def test_failing_statement_reports_failed_with_a_redshift_like_error(client: Any) -> None:
    desc = run(client, "SELECT * FROM no_such_table")
    assert desc["Status"] == "FAILED"
    assert desc["Error"].startswith("ERROR:")
    assert "no_such_table" in desc["Error"]
    assert desc["HasResultSet"] is False
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="does not have result"):
        client.get_statement_result(Id=desc["Id"])


def test_batch_runs_in_one_transaction_and_exposes_sub_statements(client: Any) -> None:
    run_ok(client, "CREATE TABLE alerts (id INT, status VARCHAR(10))")
    statement_id = client.batch_execute_statement(
        Sqls=[
            "INSERT INTO alerts VALUES (1, :status), (2, 'sent')",
            "DELETE FROM alerts WHERE id = 2 AND status <> :status",
            "SELECT id FROM alerts WHERE status = :status",
        ],
        Parameters=[{"name": "status", "value": "pending"}],
        WorkgroupName=WORKGROUP,
        Database="dev",
    )["Id"]
    desc = wait(client, statement_id)
    assert desc["Status"] == "FINISHED"
    subs = desc["SubStatements"]
    assert [s["Id"] for s in subs] == [f"{statement_id}:{n}" for n in (1, 2, 3)]
    assert [s["Status"] for s in subs] == ["FINISHED"] * 3
    assert subs[2]["HasResultSet"] is True
    assert rows(client, f"{statement_id}:3") == [[1]]
    assert client.describe_statement(Id=f"{statement_id}:3")["QueryString"].startswith("SELECT id")
    with pytest.raises(client.exceptions.ValidationException, match="sub-statement id"):
        client.get_statement_result(Id=statement_id)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_statement(Id=f"{statement_id}:4")


def test_batch_failing_half_way_applies_nothing(client: Any) -> None:
    run_ok(client, "CREATE TABLE ledger (id INT)")
    statement_id = client.batch_execute_statement(
        Sqls=[
            "INSERT INTO ledger VALUES (1)",
            "INSERT INTO missing_table VALUES (2)",
            "INSERT INTO ledger VALUES (3)",
        ],
        WorkgroupName=WORKGROUP,
        Database="dev",
    )["Id"]
    desc = wait(client, statement_id)
    assert desc["Status"] == "FAILED"
    assert "missing_table" in desc["Error"]
    # the first ran and was rolled back, the second failed, the third never started
    assert [s["Status"] for s in desc["SubStatements"]] == ["FINISHED", "FAILED", "ABORTED"]
    assert "missing_table" in desc["SubStatements"][1]["Error"]
    assert query(client, "SELECT COUNT(*) FROM ledger") == [[0]]


def test_cancel_a_long_statement_aborts_it_and_rolls_it_back(client: Any) -> None:
    make_endless_tables(client)
    statement_id = client.execute_statement(Sql=ENDLESS_SQL, WorkgroupName=WORKGROUP, Database="dev")["Id"]
    deadline = time.monotonic() + 10
    while client.describe_statement(Id=statement_id)["Status"] != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.cancel_statement(Id=statement_id)["Status"] is True
    desc = wait(client, statement_id, timeout=10)
    assert desc["Status"] == "ABORTED"
    assert "cancelled" in desc["Error"]
    assert query(client, "SELECT COUNT(*) FROM sink") == [[0]]
    with pytest.raises(client.exceptions.ValidationException, match="ABORTED"):
        client.cancel_statement(Id=statement_id)


def test_list_statements_filters_and_pages(client: Any) -> None:
    ids = [run_ok(client, f"SELECT {i}", StatementName=f"nightly-{i}")["Id"] for i in range(3)]
    failed = run(client, "SELECT * FROM nowhere", StatementName="adhoc")["Id"]
    listed = client.list_statements()["Statements"]
    assert [s["Id"] for s in listed] == [failed, *reversed(ids)]  # newest first
    assert listed[1]["QueryString"] == "SELECT 2" and listed[1]["StatementName"] == "nightly-2"
    assert listed[1]["IsBatchStatement"] is False
    by_name = client.list_statements(StatementName="nightly")["Statements"]
    assert sorted(s["Id"] for s in by_name) == sorted(ids)
    assert [s["Id"] for s in client.list_statements(Status="FAILED")["Statements"]] == [failed]
    first = client.list_statements(MaxResults=2)
    assert len(first["Statements"]) == 2 and "NextToken" in first
    rest = client.list_statements(MaxResults=2, NextToken=first["NextToken"])
    assert [s["Id"] for s in first["Statements"] + rest["Statements"]] == [s["Id"] for s in listed]
    assert "NextToken" not in rest


def test_unknown_statement_id_is_resource_not_found(client: Any) -> None:
    unknown = "0f0e0d0c-0000-4000-8000-000000000001"
    for call in (client.describe_statement, client.get_statement_result, client.cancel_statement):
        with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
            call(Id=unknown)
        assert info.value.response["Error"]["Message"]
        assert info.value.response["ResourceId"] == unknown


def test_bad_requests_are_validation_errors(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="ClusterIdentifier or WorkgroupName"):
        client.execute_statement(Sql="SELECT 1", Database="dev")
    with pytest.raises(client.exceptions.ValidationException, match="cannot both"):
        client.execute_statement(
            Sql="SELECT 1", Database="dev", WorkgroupName=WORKGROUP, ClusterIdentifier="c1"
        )
    with pytest.raises(client.exceptions.ValidationException, match="regular expression pattern"):
        client.describe_statement(Id="not-a-statement-id")
    with pytest.raises(client.exceptions.ValidationException, match="Duplicate parameter"):
        client.execute_statement(
            Sql="SELECT :a",
            WorkgroupName=WORKGROUP,
            Parameters=[{"name": "a", "value": "1"}, {"name": "a", "value": "2"}],
        )
    with pytest.raises(client.exceptions.ValidationException, match="regular expression pattern"):
        client.execute_statement(
            Sql="SELECT 1", WorkgroupName=WORKGROUP, Parameters=[{"name": "a-b", "value": "1"}]
        )
    with pytest.raises(client.exceptions.ValidationException, match="enum value set"):
        client.list_statements(Status="DONE")
    with pytest.raises(client.exceptions.ValidationException, match="empty"):
        client.execute_statement(Sql="  ", WorkgroupName=WORKGROUP)
    assert client.list_statements()["Statements"] == []  # nothing was submitted by the bad requests


def test_raw_protocol_errors(redshift_endpoint: str) -> None:
    def post(target: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target:
            headers["X-Amz-Target"] = target
        request = urllib.request.Request(redshift_endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = post("RedshiftData.ExecuteStatement", b'{"WorkgroupName": "fraud-wg"}')
    assert status == 400 and body["__type"] == "ValidationException"
    assert "'sql' failed to satisfy constraint: Member must not be null" in body["Message"]
    status, body = post("RedshiftData.ExecuteStatement", b"{not json")
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = post("RedshiftData.ExecuteStatement", b'{"Sql": 42, "WorkgroupName": "fraud-wg"}')
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = post("RedshiftData.DropEverything", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    status, body = post(None, b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"


def test_csv_result_format_through_get_statement_result_v2(client: Any) -> None:
    run_ok(client, "CREATE TABLE c (id INT, name VARCHAR(20))")
    run_ok(client, "INSERT INTO c VALUES (1, 'plain'), (2, 'with, comma'), (3, NULL)")
    desc = run_ok(client, "SELECT id, name FROM c ORDER BY id", ResultFormat="CSV")
    assert desc["ResultFormat"] == "CSV"
    result = client.get_statement_result_v2(Id=desc["Id"])
    assert result["ResultFormat"] == "CSV" and result["TotalNumRows"] == 3
    assert result["Records"] == [{"CSVRecords": 'id,name\n1,plain\n2,"with, comma"\n3,\n'}]
    with pytest.raises(client.exceptions.ValidationException, match="GetStatementResultV2"):
        client.get_statement_result(Id=desc["Id"])


def test_wait_time_seconds_returns_when_the_statement_ends(client: Any) -> None:
    out = client.execute_statement(Sql="SELECT 42 AS answer", WorkgroupName=WORKGROUP, WaitTimeSeconds=5)
    assert out["Status"] == "FINISHED" and out["HasResultSet"] is True
    assert client.describe_statement(Id=out["Id"], WaitTimeSeconds=1)["Status"] == "FINISHED"
    assert rows(client, out["Id"]) == [[42]]


def test_client_token_makes_a_retry_idempotent(client: Any) -> None:
    run_ok(client, "CREATE TABLE once (id INT)")
    kwargs = {"Sql": "INSERT INTO once VALUES (1)", "WorkgroupName": WORKGROUP, "ClientToken": "retry-1"}
    first = client.execute_statement(**kwargs)["Id"]
    assert client.execute_statement(**kwargs)["Id"] == first
    wait(client, first)
    assert query(client, "SELECT COUNT(*) FROM once") == [[1]]


def test_many_concurrent_statements_all_finish(client: Any) -> None:
    ids = [client.execute_statement(Sql=f"SELECT {i} AS n", WorkgroupName=WORKGROUP)["Id"] for i in range(20)]
    assert [rows(client, wait(client, i)["Id"]) for i in ids] == [[[i]] for i in range(20)]


def test_active_statement_quota(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "quota.duckdb")
    with start_server(engine, max_active_statements=1) as handle:
        client = boto3.client("redshift-data", endpoint_url=handle.url)
        make_endless_tables(client)
        long_id = client.execute_statement(Sql=ENDLESS_SQL, WorkgroupName=WORKGROUP)["Id"]
        with pytest.raises(client.exceptions.ActiveStatementsExceededException):
            client.execute_statement(Sql="SELECT 1", WorkgroupName=WORKGROUP)
        client.cancel_statement(Id=long_id)
        assert run_ok(client, "SELECT 1")["Status"] == "FINISHED"
    engine.close()


def test_results_expire_after_the_retention_period(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "expiry.duckdb")
    with start_server(engine, retention_seconds=0.2) as handle:
        client = boto3.client("redshift-data", endpoint_url=handle.url)
        statement_id = run_ok(client, "SELECT 1")["Id"]
        time.sleep(0.3)
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_statement_result(Id=statement_id)
    engine.close()


def test_restart_on_the_same_file_keeps_tables(tmp_path: Path) -> None:
    db_file = tmp_path / "restart.duckdb"
    for step in ("write", "read"):
        engine = Engine(db_file)
        with start_server(engine) as handle:
            client = boto3.client("redshift-data", endpoint_url=handle.url)
            if step == "write":
                run_ok(client, "CREATE TABLE kept (id INT)")
                run_ok(client, "INSERT INTO kept VALUES (7)")
            else:
                assert query(client, "SELECT id FROM kept") == [[7]]
        engine.close()


def test_shutdown_cancels_a_running_statement_and_rolls_it_back(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "shutdown.duckdb")
    handle = start_server(engine)
    client = boto3.client("redshift-data", endpoint_url=handle.url)
    make_endless_tables(client)
    statement_id = client.execute_statement(Sql=ENDLESS_SQL, WorkgroupName=WORKGROUP)["Id"]
    handle.shutdown()  # returns: the running statement is interrupted, not waited for
    found = handle.store.get(statement_id)
    assert found is not None and found[0].status == "ABORTED"
    assert engine.execute("SELECT COUNT(*) FROM sink").rows == [(0,)]
    engine.close()


# -- the wire encoding of values (pure functions, no server) ----------------------------------------


def test_values_are_encoded_as_the_data_api_encodes_them() -> None:
    import datetime as dt
    from decimal import Decimal

    from local.redshift.dataapi_results import field, text_value

    assert field(None) == {"isNull": True}
    assert field(True) == {"booleanValue": True}  # a bool is not a long
    assert field(7) == {"longValue": 7}
    assert field(0.5) == {"doubleValue": 0.5}
    assert field(Decimal("12.50")) == {"stringValue": "12.50"}
    assert text_value(dt.datetime(2024, 1, 2, 3, 4, 5, 500000)) == "2024-01-02 03:04:05.5"
    assert text_value(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05"
    utc_plus_530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
    assert text_value(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2024-01-02 03:04:05+00"
    assert text_value(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc_plus_530)) == "2024-01-02 03:04:05+05:30"
    assert text_value(dt.date(2024, 2, 29)) == "2024-02-29"
    assert text_value(b"\x01\xff") == "01ff"
    assert text_value({"a": [1, None]}) == '{"a":[1,null]}'


def test_column_types_and_size_based_pages() -> None:
    from local.redshift.dataapi_results import encode_result, redshift_type
    from local.redshift.engine import Column, Result

    assert redshift_type(Column("a", "DECIMAL(12,2)")) == ("numeric", 12, 2)
    assert redshift_type(Column("a", "INTEGER")) == ("int4", 10, 0)
    assert redshift_type(Column("a", "int8")) == ("int8", 19, 0)
    assert redshift_type(Column("a", "INTEGER[]"))[0] == "super"
    assert redshift_type(Column("a", "TIMESTAMP WITH TIME ZONE"))[0] == "timestamptz"
    result = encode_result(Result([Column("s", "varchar")], [("x" * n,) for n in (10, 500, 10, 10)]), "JSON")
    pages, start = [], 0
    while start is not None:
        page, start = result.page(start, 100)
        pages.append(len(page))
    assert pages == [1, 1, 2]  # a record larger than a page still travels alone; nothing is lost
