"""SQL injection: values reach SQL only as Data API parameters or through strict allow-lists.

Entry points checked here (in process): settings and placeholders (identifiers spliced into SQL text),
Data API parameter binding in the emulator, the alert parser of act_on_alert, and the project's own
Python (no SQL text built from variables except reviewed, allow-listed identifiers). The same strings
go through the real HTTP endpoint, the stream and the outbox in tests/reliability/test_injection.py.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from fraud_common.actions import BadAlert, parse_alert
from fraud_common.settings import SettingsError, SqlSettings
from fraud_common.sqlfiles import ALLOWED, PLACEHOLDER, SqlTemplateError, fill

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INJECTIONS = [
    "x'; DROP TABLE victims; --",
    'x"; DROP TABLE victims; --',
    "1 OR 1=1",
    "x\\'; DROP TABLE victims; --",
    "$$; DROP TABLE victims; $$",
    "x/* */; DELETE FROM victims",
    "fraud_model\n; DROP TABLE victims",
    "fraud_model\n",  # Python's `$` matches before a final newline: an allow-list must not
    "ümlaut'||(SELECT 1)||'",
    "",
]
VALID = {
    "TX_STREAM": "fraud-tx",
    "LABEL_STREAM": "fraud-labels",
    "IAM_ROLE": "arn:aws:iam::123456789012:role/fraud-redshift",
    "S3_BUCKET": "fraud-data-bucket",
    "MODEL_NAME": "fraud_model",
    "MODEL_FUNCTION": "fn_fraud_score",
    "MAX_RUNTIME": "5400",
    "MAX_CELLS": "1000000",
}
# f-strings that build SQL from a variable, each reviewed: the variable is checked against IDENTIFIER first.
REVIEWED_SQL_FSTRINGS = {
    ("training.py", "SHOW MODEL"),  # the model name is checked against IDENTIFIER first
    ("training.py", "CREATE MODEL"),  # not SQL: the StatementName label "create model <name>"
}
SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|DROP|SHOW|CREATE|ALTER|CALL|REFRESH|COPY|UNLOAD)\b", re.I
)


@pytest.mark.parametrize("name", sorted(ALLOWED))
@pytest.mark.parametrize("value", INJECTIONS)
def test_every_placeholder_rejects_injection(name: str, value: str) -> None:
    values = {**VALID, name: value}
    with pytest.raises(SqlTemplateError, match=f"not valid for \\${{{name}}}"):
        fill(f"SELECT 1 FROM t WHERE x = '${{{name}}}'", values, "test.sql")
    rendered = f"'{VALID[name]}'" if name == "IAM_ROLE" else VALID[name]  # an ARN is written quoted
    assert fill(f"-- ${{{name}}}", VALID, "test.sql") == f"-- {rendered}"


@pytest.mark.parametrize("variable", ["MODEL_NAME", "MODEL_FUNCTION"])
def test_identifier_settings_reject_injection(variable: str) -> None:
    env = {"TX_STREAM": "a", "LABEL_STREAM": "b", "S3_BUCKET": "bucket", variable: "x; DROP TABLE t"}
    with pytest.raises(SettingsError, match=variable):
        SqlSettings.from_env(env)


def test_settings_values_that_pass_still_meet_the_placeholder_allow_list() -> None:
    """A stream name with a quote passes the settings (free text) but never reaches the SQL text."""
    env = {"TX_STREAM": 'tx"; DROP TABLE t; --', "LABEL_STREAM": "b", "S3_BUCKET": "bucket"}
    placeholders = SqlSettings.from_env(env).placeholders()
    with pytest.raises(SqlTemplateError, match="TX_STREAM"):
        fill('SELECT * FROM kinesis_tx."${TX_STREAM}"', placeholders)


def test_sql_files_use_only_known_placeholders_and_parameters() -> None:
    files = sorted((REPO / "sql").rglob("*.sql"))
    assert len(files) > 5
    for path in files:
        for name in PLACEHOLDER.findall(path.read_text(encoding="utf-8")):
            assert name in ALLOWED, f"{path.relative_to(REPO)}: unknown placeholder {name}"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from local.redshift.engine import Engine

    engine = Engine(tmp_path_factory.mktemp("sec") / "warehouse.duckdb")
    engine.execute("CREATE TABLE victims (id integer, note varchar(200))")
    engine.execute("INSERT INTO victims VALUES (1, 'untouched')")
    yield engine
    engine.close()


@pytest.mark.parametrize("value", INJECTIONS)
def test_data_api_parameters_are_bound_as_values_in_the_emulator(engine, value: str) -> None:
    echoed = engine.execute("SELECT :v AS v", {"v": value})
    assert echoed.rows == [(value,)]
    engine.execute("INSERT INTO victims (id, note) VALUES (2, :note)", {"note": value})
    found = engine.execute("SELECT count(*) FROM victims WHERE id = 2 AND note = :note", {"note": value})
    assert found.rows == [(1,)]
    engine.execute("DELETE FROM victims WHERE id = 2")
    assert engine.execute("SELECT id, note FROM victims").rows == [(1, "untouched")]


@pytest.mark.parametrize("value", INJECTIONS)
def test_alert_ids_must_be_integers(value: str) -> None:
    with pytest.raises(BadAlert, match="integer transaction_id"):
        parse_alert(json.dumps({"transaction_id": value, "customer_id": 1}))


def test_no_sql_text_is_built_from_variables_outside_the_reviewed_places() -> None:
    found = set()
    roots = [REPO / "layers" / "fraud_common" / "fraud_common", REPO / "functions"]
    for path in [p for root in roots for p in root.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr) or not node.values:
                continue
            head = node.values[0]
            text = str(head.value) if isinstance(head, ast.Constant) else ""
            if SQL_START.match(text) and any(isinstance(v, ast.FormattedValue) for v in node.values):
                found.add((path.name, " ".join(text.split()[:2]).upper()))
    assert found == REVIEWED_SQL_FSTRINGS
