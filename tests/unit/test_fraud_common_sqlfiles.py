"""fraud_common.sqlfiles and settings: templating, statement splitting, env validation."""

from __future__ import annotations

import pytest
from fraud_common.settings import ActionSettings, AlertSettings, SettingsError, SqlSettings, WarehouseSettings
from fraud_common.sqlfiles import SqlTemplateError, fill, split_statements, sql_dir

pytestmark = pytest.mark.unit

VALUES = {
    "TX_STREAM": "cust-payment-txn-stream",
    "IAM_ROLE": "arn:aws:iam::123456789012:role/card-fraud-redshift",
    "MODEL_FUNCTION": "fn_fraud_score_v1",
}


def test_split_at_semicolon_ending_a_line_only() -> None:
    sql = "SELECT 1 ; \nSELECT 'a;b', \"x;\"\n FROM t; -- trailing note\nSELECT 3"
    assert split_statements(sql) == [
        "SELECT 1",
        "SELECT 'a;b', \"x;\"\n FROM t",
        "-- trailing note\nSELECT 3",
    ]


def test_split_ignores_semicolons_in_quotes_comments_and_dollar_bodies() -> None:
    sql = (
        "-- header; with a semicolon;\n"
        "INSERT INTO t VALUES ('it''s;\n still one;\n');\n"
        "/* block;\n comment; */\n"
        "CREATE FUNCTION f() RETURNS int AS $$\n  select 1;\n$$ LANGUAGE sql;\n"
        "SELECT 'x' -- not the end; here\n  AS y;\n"
    )
    statements = split_statements(sql)
    assert len(statements) == 3
    assert statements[0].endswith("VALUES ('it''s;\n still one;\n')")
    assert "select 1;" in statements[1] and statements[1].endswith("LANGUAGE sql")
    assert statements[2].endswith("AS y")


def test_split_drops_comment_only_chunks_and_reports_unterminated_text() -> None:
    assert split_statements("-- nothing here;\n/* nor; here */\n") == []
    with pytest.raises(SqlTemplateError, match="unterminated"):
        split_statements("SELECT 'open;\n")


def test_fill_replaces_known_placeholders_with_checked_values() -> None:
    sql = 'FROM s."${TX_STREAM}" IAM_ROLE ${IAM_ROLE} SELECT ${MODEL_FUNCTION}(x)'
    assert fill(sql, VALUES) == (
        "FROM s.\"cust-payment-txn-stream\" IAM_ROLE 'arn:aws:iam::123456789012:role/card-fraud-redshift' "
        "SELECT fn_fraud_score_v1(x)"
    )


def test_fill_writes_iam_role_default_bare_and_an_arn_quoted() -> None:
    # Redshift: IAM_ROLE { default | 'arn:...' }; a quoted 'default' names no role.
    assert fill("IAM_ROLE ${IAM_ROLE}", {"IAM_ROLE": "default"}) == "IAM_ROLE default"
    assert fill("IAM_ROLE ${IAM_ROLE}", {"IAM_ROLE": "arn:aws:iam::123456789012:role/r"}) == (
        "IAM_ROLE 'arn:aws:iam::123456789012:role/r'"
    )


@pytest.mark.parametrize(
    ("sql", "values", "message"),
    [
        ("SELECT ${NOT_ALLOWED}", VALUES, "unknown placeholder"),
        ("SELECT ${S3_BUCKET}", VALUES, "no value"),
        ("SELECT ${MODEL_FUNCTION}(1)", {"MODEL_FUNCTION": "f(); DROP TABLE t; --"}, "not valid"),
        ("IAM_ROLE ${IAM_ROLE}", {"IAM_ROLE": "x' ; DROP TABLE t; --"}, "not valid"),
        # Redshift would look for the stream "card-stream", which Kinesis does not have
        ('FROM s."${TX_STREAM}"', {"TX_STREAM": "Card-Stream"}, "must be lowercase"),
    ],
)
def test_fill_rejects_unknown_missing_and_malformed(sql: str, values: dict, message: str) -> None:
    with pytest.raises(SqlTemplateError, match=message):
        fill(sql, values, "001_x.sql")


def test_sql_dir_prefers_override_then_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FRAUD_SQL_DIR", str(tmp_path))
    assert sql_dir() == tmp_path
    monkeypatch.delenv("FRAUD_SQL_DIR")
    assert (sql_dir() / "README.md").is_file()


def test_settings_name_the_missing_variable() -> None:
    with pytest.raises(SettingsError, match="REDSHIFT_WORKGROUP"):
        WarehouseSettings.from_env({})
    with pytest.raises(SettingsError, match="only one"):
        WarehouseSettings.from_env({"REDSHIFT_WORKGROUP": "wg", "REDSHIFT_CLUSTER_ID": "c"})
    with pytest.raises(SettingsError, match="ALERT_TOPIC_ARN"):
        AlertSettings.from_env({})
    with pytest.raises(SettingsError, match="CASES_TABLE"):
        ActionSettings.from_env({})
    with pytest.raises(SettingsError, match="TX_STREAM"):
        SqlSettings.from_env({"LABEL_STREAM": "l", "S3_BUCKET": "b"})


def test_settings_reject_malformed_values() -> None:
    topic = {"ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t"}
    with pytest.raises(SettingsError, match="ALERT_THRESHOLD"):
        AlertSettings.from_env({**topic, "ALERT_THRESHOLD": "high"})
    with pytest.raises(SettingsError, match="ALERT_THRESHOLD"):
        AlertSettings.from_env({**topic, "ALERT_THRESHOLD": "1.5"})
    with pytest.raises(SettingsError, match="MODEL_NAME"):
        SqlSettings.from_env(
            {"TX_STREAM": "t", "LABEL_STREAM": "l", "S3_BUCKET": "b", "MODEL_NAME": "m; drop"}
        )


def test_settings_defaults_and_cluster_target() -> None:
    warehouse = WarehouseSettings.from_env({"REDSHIFT_CLUSTER_ID": "c1", "REDSHIFT_DB_USER": "awsuser"})
    assert (warehouse.database, warehouse.cluster_id, warehouse.workgroup) == ("dev", "c1", None)
    alert = AlertSettings.from_env({"ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t"})
    assert (alert.threshold, alert.poll_interval_s, alert.batch_limit) == (0.5, 5.0, 500)


def test_every_project_sql_file_templates_and_splits() -> None:
    """The contract with sql/: every placeholder is known, every query file holds exactly one statement."""
    from fraud_common import migrations, queries

    settings = SqlSettings.from_env(
        {
            "TX_STREAM": "cust-payment-txn-stream",
            "LABEL_STREAM": "cust-payment-label-stream",
            "S3_BUCKET": "card-fraud-data-123456789012-us-east-1",
        }
    )
    placeholders = settings.placeholders()
    found = migrations.discover()
    assert found and [m.version for m in found] == sorted(m.version for m in found)
    for migration in found:
        assert split_statements(fill(migration.text, placeholders, migration.name)), migration.name
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        statements = split_statements(queries.load(path.stem, placeholders))
        assert len(statements) == 1, f"{path.name} holds {len(statements)} statements"
