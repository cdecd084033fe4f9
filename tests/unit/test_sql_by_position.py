"""What the SQL passes by position, checked by name, because a mismatch there is silent.

- A Redshift ML function takes its inputs by position, in the order of the CREATE MODEL query's
  columns: a call that lists them in another order scores garbage without any error. Every call of a
  model function must pass the columns its CREATE MODEL trained on, in that order, and
  `python -m local evaluate` must train on those same inputs.
- `INSERT INTO t SELECT ...` fills t's columns by position: two float features swapped in the SELECT
  would be stored under each other's names. Every column the SELECT names must be the table's column
  at that position.
"""

from __future__ import annotations

import pytest
import sqlglot
from fraud_common.queries import load
from fraud_common.sqlfiles import fill, split_statements, sql_dir
from sqlglot import exp

from local.evaluate import MODEL_INPUTS, PRODUCT_MODEL_QUERY
from local.redshift.ml.statements import is_model_statement, parse

pytestmark = pytest.mark.unit

PLACEHOLDERS = {
    "TX_STREAM": "tx-stream",
    "LABEL_STREAM": "label-stream",
    "MODEL_NAME": "model_under_test",
    "MODEL_FUNCTION": "fn_under_test",
    "IAM_ROLE": "default",
    "S3_BUCKET": "bucket-under-test",
    "MAX_RUNTIME": "3600",
    "MAX_CELLS": "1000000",
}
# the model a query's function is trained by, and the queries that call that function
CALLERS = {
    "create_model": ["score_new_transactions", "confusion_matrix"],
    "create_model_handbook": ["baseline_predictions"],
}


def trained_inputs(create_model: str) -> list[str]:
    """The columns the CREATE MODEL query selects, in order, without its TARGET."""
    statement = parse(load(create_model, PLACEHOLDERS))
    query = sqlglot.parse_one(statement.source_sql, read="redshift")
    names = [column.alias_or_name.lower() for column in query.selects]
    return [name for name in names if name != statement.target.lower()]


def call_arguments(sql: str) -> list[list[str]]:
    """The column names passed to the model function, per call, in order (table qualifiers dropped)."""
    tree = sqlglot.parse_one(sql, read="redshift")
    calls = [f for f in tree.find_all(exp.Anonymous) if f.name.lower() == PLACEHOLDERS["MODEL_FUNCTION"]]
    return [[arg.name.lower() for arg in call.expressions] for call in calls]


@pytest.mark.parametrize(
    ("create_model", "caller"), [(model, caller) for model, callers in CALLERS.items() for caller in callers]
)
def test_model_calls_pass_the_trained_columns_in_order(create_model: str, caller: str) -> None:
    calls = call_arguments(load(caller, PLACEHOLDERS))
    assert calls, f"{caller}.sql does not call the model function"
    assert calls == [trained_inputs(create_model)] * len(calls)


@pytest.mark.parametrize("features", sorted(PRODUCT_MODEL_QUERY))
def test_evaluate_measures_the_product_models_inputs(features: str) -> None:
    assert [c.lower() for c in MODEL_INPUTS[features]] == trained_inputs(PRODUCT_MODEL_QUERY[features])


def test_a_swapped_argument_is_seen() -> None:
    sql = load("score_new_transactions", PLACEHOLDERS)
    swapped = sql.replace(
        "f.tx_during_weekend, f.tx_during_night", "f.tx_during_night, f.tx_during_weekend", 1
    )
    inputs = trained_inputs("create_model")
    assert inputs[1:3] == ["tx_during_weekend", "tx_during_night"]
    assert call_arguments(swapped) == [[inputs[0], inputs[2], inputs[1], *inputs[3:]]]


def statements() -> dict[str, exp.Expression]:
    """Every statement of the migrations and the named queries but CREATE MODEL, parsed, by origin."""
    texts = {}
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        for i, statement in enumerate(split_statements(fill(path.read_text(), PLACEHOLDERS, path.name))):
            texts[f"{path.name}#{i + 1}"] = statement
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        texts[path.name] = load(path.stem, PLACEHOLDERS)
    return {
        name: sqlglot.parse_one(sql, read="redshift")
        for name, sql in texts.items()
        if not is_model_statement(sql) and not sql.lstrip().upper().startswith("CREATE EXTERNAL SCHEMA")
    }


STATEMENTS = statements()
TABLES = {
    tree.this.this.name: [
        column.name for column in tree.this.expressions if isinstance(column, exp.ColumnDef)
    ]
    for tree in STATEMENTS.values()
    if isinstance(tree, exp.Create) and tree.kind == "TABLE"
}
# INSERT ... SELECT (an INSERT ... VALUES names no columns to check)
INSERTS = {
    name: tree
    for name, tree in STATEMENTS.items()
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Select)
}


def misplaced_columns(insert: exp.Insert) -> list[tuple[str, str]]:
    """(table column, selected name) wherever a named SELECT column is not the table's column there."""
    target = insert.this
    columns = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else TABLES[target.name]
    selects = insert.expression.selects
    assert len(selects) == len(columns)
    return [
        (column, selected.alias_or_name)
        for column, selected in zip(columns, selects, strict=True)
        if isinstance(selected, (exp.Column, exp.Alias)) and selected.alias_or_name != column
    ]


@pytest.mark.parametrize("name", sorted(INSERTS))
def test_insert_select_names_each_column_at_its_position(name: str) -> None:
    assert misplaced_columns(INSERTS[name]) == []


def test_a_swapped_insert_column_is_seen() -> None:
    sql = load("featurise_history", PLACEHOLDERS)
    swapped = sql.replace("tx_during_weekend, tx_during_night", "tx_during_night, tx_during_weekend", 1)
    assert swapped != sql
    assert misplaced_columns(sqlglot.parse_one(swapped, read="redshift")) == [
        ("tx_during_weekend", "tx_during_night"),
        ("tx_during_night", "tx_during_weekend"),
    ]
