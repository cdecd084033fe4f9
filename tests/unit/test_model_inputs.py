"""A Redshift ML function takes its inputs by position, in the order of the CREATE MODEL query's
columns: a call that lists them in another order scores garbage without any error. These tests read
the SQL files and check that every call of a model function passes the columns its CREATE MODEL
trained on, in the same order, and that `python -m local evaluate` measures those same inputs."""

from __future__ import annotations

import pytest
import sqlglot
from fraud_common.queries import load
from sqlglot import exp

from local.evaluate import MODEL_INPUTS, PRODUCT_MODEL_QUERY
from local.redshift.ml.statements import parse

pytestmark = pytest.mark.unit

PLACEHOLDERS = {
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
    assert swapped != sql
    assert call_arguments(swapped) != [trained_inputs("create_model")]
