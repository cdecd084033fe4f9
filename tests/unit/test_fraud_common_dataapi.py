"""fraud_common.dataapi against botocore's Stubber (request shapes are validated by botocore's model)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from botocore.stub import ANY
from fraud_common.dataapi import DataApi, StatementError, StatementTimeout, to_parameters
from fraud_common.settings import WarehouseSettings

from tests.conftest import stubbed_client

pytestmark = pytest.mark.unit

WORKGROUP = WarehouseSettings(database="dev", workgroup="card-fraud-wg", statement_timeout_s=10)
STATEMENT_ID = "11111111-2222-3333-4444-555555555555"
# DescribeStatement asks the service to hold the call until the statement ends (1..30 s).
DESCRIBE = {"Id": STATEMENT_ID, "WaitTimeSeconds": ANY}


class Clock:
    """Manual time: sleeping advances it, so backoff and timeouts are checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def client():
    with stubbed_client("redshift-data") as client:
        yield client


def api_for(client, settings: WarehouseSettings = WORKGROUP) -> tuple[DataApi, Clock]:
    clock = Clock()
    return DataApi(settings, client=client, sleep=clock.sleep, clock=lambda: clock.now), clock


def test_execute_binds_parameters_waits_with_backoff_and_pages_rows(client) -> None:
    stub = client.stub
    stub.add_response(
        "execute_statement",
        {"Id": STATEMENT_ID},
        {
            "Sql": "SELECT id, amount, name FROM t WHERE id > :min",
            "Database": "dev",
            "WorkgroupName": "card-fraud-wg",
            "Parameters": [{"name": "min", "value": "5"}],
        },
    )
    for status in ("SUBMITTED", "PICKED", "STARTED"):
        stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": status}, DESCRIBE)
    stub.add_response(
        "describe_statement",
        {"Id": STATEMENT_ID, "Status": "FINISHED", "HasResultSet": True, "ResultRows": 3},
        DESCRIBE,
    )
    columns = [
        {"name": "id", "typeName": "int8"},
        {"name": "amount", "typeName": "numeric"},
        {"name": "name", "typeName": "varchar"},
    ]
    stub.add_response(
        "get_statement_result",
        {
            "Records": [
                [{"longValue": 6}, {"stringValue": "12.50"}, {"stringValue": "a"}],
                [{"longValue": 7}, {"isNull": True}, {"stringValue": "b"}],
            ],
            "ColumnMetadata": columns,
            "TotalNumRows": 3,
            "NextToken": "page-2",
        },
        {"Id": STATEMENT_ID},
    )
    stub.add_response(
        "get_statement_result",
        {
            "Records": [[{"longValue": 8}, {"stringValue": "1.00"}, {"isNull": True}]],
            "ColumnMetadata": columns,
            "TotalNumRows": 3,
        },
        {"Id": STATEMENT_ID, "NextToken": "page-2"},
    )
    api, clock = api_for(client)
    result = api.execute("SELECT id, amount, name FROM t WHERE id > :min", {"min": 5})
    assert result.rows == [
        {"id": 6, "amount": Decimal("12.50"), "name": "a"},
        {"id": 7, "amount": None, "name": "b"},
        {"id": 8, "amount": Decimal("1.00"), "name": None},
    ]
    assert result.rows_affected == 3
    assert clock.sleeps == [0.05, 0.1, 0.2]  # exponential backoff between polls


def test_failed_statement_raises_with_redshift_message_and_sql(client) -> None:
    client.stub.add_response(
        "execute_statement", {"Id": STATEMENT_ID}, {"Sql": ANY, "Database": "dev", "WorkgroupName": ANY}
    )
    client.stub.add_response(
        "describe_statement",
        {"Id": STATEMENT_ID, "Status": "FAILED", "Error": 'ERROR: relation "nope" does not exist'},
        DESCRIBE,
    )
    api, _ = api_for(client)
    with pytest.raises(StatementError) as info:
        api.execute("SELECT * FROM nope")
    assert info.value.message == 'ERROR: relation "nope" does not exist'
    assert info.value.sql == "SELECT * FROM nope"
    assert "SELECT * FROM nope" in str(info.value)


def test_batch_names_the_failing_sub_statement(client) -> None:
    client.stub.add_response(
        "batch_execute_statement",
        {"Id": STATEMENT_ID},
        {
            "Sqls": ["UPDATE a SET x = :v", "UPDATE b SET y = :v"],
            "Database": "dev",
            "ClusterIdentifier": "c1",
            "DbUser": "awsuser",
            "Parameters": [{"name": "v", "value": "true"}],
        },
    )
    client.stub.add_response(
        "describe_statement",
        {
            "Id": STATEMENT_ID,
            "Status": "FAILED",
            "Error": "ERROR: column y does not exist",
            "SubStatements": [
                {"Id": f"{STATEMENT_ID}:1", "Status": "FINISHED", "QueryString": "UPDATE a SET x = :v"},
                {"Id": f"{STATEMENT_ID}:2", "Status": "FAILED", "QueryString": "UPDATE b SET y = :v"},
            ],
        },
        DESCRIBE,
    )
    api, _ = api_for(client, WarehouseSettings(database="dev", cluster_id="c1", db_user="awsuser"))
    with pytest.raises(StatementError) as info:
        api.batch(["UPDATE a SET x = :v", "UPDATE b SET y = :v"], {"v": True})
    assert info.value.sql == "UPDATE b SET y = :v"


def test_timeout_cancels_the_statement(client) -> None:
    client.stub.add_response(
        "execute_statement", {"Id": STATEMENT_ID}, {"Sql": ANY, "Database": "dev", "WorkgroupName": ANY}
    )
    # Sleeps 0.05, 0.1, ... capped at 2 s: the 11th poll, at 11.15 s, is past the 10 s timeout.
    for _ in range(11):
        client.stub.add_response("describe_statement", {"Id": STATEMENT_ID, "Status": "STARTED"}, DESCRIBE)
    client.stub.add_response("cancel_statement", {"Status": True}, {"Id": STATEMENT_ID})
    api, clock = api_for(client)
    with pytest.raises(StatementTimeout, match="cancelled"):
        api.execute("SELECT pg_sleep(60)")
    assert clock.now >= 10


def test_secret_target_and_parameter_rules() -> None:
    api = DataApi(
        WarehouseSettings(database="dev", workgroup="wg", secret_arn="arn:aws:secretsmanager:x"),
        client=object(),
    )
    assert api.target() == {"Database": "dev", "WorkgroupName": "wg", "SecretArn": "arn:aws:secretsmanager:x"}
    assert to_parameters({"a": 1, "b": 0.5, "c": False, "d": "x"}) == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "0.5"},
        {"name": "c", "value": "false"},
        {"name": "d", "value": "x"},
    ]
    with pytest.raises(ValueError, match="cannot bind NULL"):
        to_parameters({"a": None})
