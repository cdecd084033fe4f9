"""CREATE MODEL / SHOW MODEL / DROP MODEL parsing: Redshift's full syntax in, Redshift-like errors out."""

from __future__ import annotations

import pytest

from local.redshift.ml.statements import (
    CreateModel,
    DropModel,
    MLStatementError,
    ShowModel,
    is_model_statement,
    parse,
)

pytestmark = pytest.mark.unit

FULL = """
-- the article's form, AUTO OFF variant, every clause in Redshift's order
CREATE MODEL public.cust_cc_txn_fd_v2
FROM (SELECT tx_amount, tx_during_night, tx_fraud FROM cust_payment_tx_history WHERE note <> 'a ) b')
TARGET tx_fraud
FUNCTION fn_customer_cc_fd_v2
IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-ml'
AUTO OFF
MODEL_TYPE XGBOOST
OBJECTIVE 'reg:logistic'
PREPROCESSORS 'none'
HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '50', MAX_DEPTH '6', ETA '0.2')
SETTINGS (S3_BUCKET 'my-bucket', S3_GARBAGE_COLLECT OFF, MAX_CELLS 5000000, MAX_RUNTIME 1800, KMS_KEY_ID 'k');
"""


def test_full_auto_off_syntax_parses() -> None:
    s = parse(FULL)
    assert isinstance(s, CreateModel)
    assert (s.schema, s.name, s.target, s.function) == (
        "public",
        "cust_cc_txn_fd_v2",
        "tx_fraud",
        "fn_customer_cc_fd_v2",
    )
    assert (
        s.source_sql
        == "SELECT tx_amount, tx_during_night, tx_fraud FROM cust_payment_tx_history WHERE note <> 'a ) b'"
    )
    assert s.iam_role == "arn:aws:iam::123456789012:role/redshift-ml"
    assert (s.auto, s.model_type, s.objective, s.preprocessors) == (False, "XGBOOST", "reg:logistic", "none")
    assert s.hyperparameters == {"NUM_ROUND": "50", "MAX_DEPTH": "6", "ETA": "0.2"}
    assert (s.max_cells, s.max_runtime) == (5_000_000, 1800)
    assert s.settings["S3_GARBAGE_COLLECT"] == "OFF"


def test_article_auto_on_form_with_table_source_and_defaults() -> None:
    s = parse(
        "create model m from cust_payment_tx_history target tx_fraud function fn_m iam_role default "
        "settings (s3_bucket 'b', s3_garbage_collect off, max_runtime 9600)"
    )
    assert s.auto and s.model_type is None and s.objective is None
    assert s.source_sql == 'SELECT * FROM "cust_payment_tx_history"'
    assert (s.iam_role, s.max_cells, s.max_runtime) == ("default", 1_000_000, 9600)


def test_auto_on_problem_type_and_objective() -> None:
    s = parse(
        "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO ON MODEL_TYPE XGBOOST "
        "PROBLEM_TYPE BINARY_CLASSIFICATION OBJECTIVE 'AUC' SETTINGS (S3_BUCKET 'b')"
    )
    assert (s.problem_type, s.objective, s.model_type) == ("BINARY_CLASSIFICATION", "AUC", "XGBOOST")


def test_show_and_drop() -> None:
    assert parse("SHOW MODEL ALL") == ShowModel(None)
    assert parse('show model public."M1";') == ShowModel("m1")
    assert parse("DROP MODEL IF EXISTS demo.m2") == DropModel("m2", True)
    assert parse("drop model m3") == DropModel("m3", False)


def test_handles_only_model_statements() -> None:
    assert is_model_statement("/* c */ -- x\n  create   model m from t")
    assert is_model_statement("SHOW MODEL ALL")
    assert not is_model_statement("CREATE TABLE model (a int)")
    assert not is_model_statement("SELECT 'CREATE MODEL'")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE MODEL m FROM t TARGET y IAM_ROLE default SETTINGS (S3_BUCKET 'b')",
            'near "IAM_ROLE": expected FUNCTION',
        ),
        ("CREATE MODEL m FROM (SELECT 1 TARGET y", "unbalanced parentheses"),
        ("CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default", "expected SETTINGS"),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b') extra",
            "end of statement",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b', COLOUR 'red')",
            "unknown SETTINGS option COLOUR",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (MAX_CELLS 10)",
            "must include S3_BUCKET",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b', MAX_CELLS 'x')",
            "MAX_CELLS must be a positive integer",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF SETTINGS (S3_BUCKET 'b')",
            "MODEL_TYPE is required with AUTO OFF",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST SETTINGS (S3_BUCKET 'b')",
            "OBJECTIVE is required",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'F1' SETTINGS (S3_BUCKET 'b')",
            "invalid OBJECTIVE 'F1' for MODEL_TYPE XGBOOST",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' PREPROCESSORS '[]' SETTINGS (S3_BUCKET 'b')",
            "PREPROCESSORS must be 'none' with AUTO OFF",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' HYPERPARAMETERS DEFAULT EXCEPT (FOO '1') SETTINGS (S3_BUCKET 'b')",
            "unknown XGBoost hyperparameter FOO",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND 'many') SETTINGS (S3_BUCKET 'b')",
            "NUM_ROUND expects a int value",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'multi:softmax' SETTINGS (S3_BUCKET 'b')",
            "NUM_CLASS is required",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST PROBLEM_TYPE REGRESSION OBJECTIVE 'reg:logistic' SETTINGS (S3_BUCKET 'b')",
            "PROBLEM_TYPE is not supported with AUTO OFF",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default HYPERPARAMETERS DEFAULT SETTINGS (S3_BUCKET 'b')",
            "HYPERPARAMETERS is supported only with AUTO OFF",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default OBJECTIVE 'reg:logistic' SETTINGS (S3_BUCKET 'b')",
            "invalid OBJECTIVE 'reg:logistic' for AUTO ON",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default MODEL_TYPE MLP SETTINGS (S3_BUCKET 'b')",
            "MODEL_TYPE MLP is not supported by the local Redshift ML emulator",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default MODEL_TYPE RANDOM_FOREST SETTINGS (S3_BUCKET 'b')",
            "invalid MODEL_TYPE RANDOM_FOREST",
        ),
        (
            "CREATE MODEL m FROM 'sagemaker-job' FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b')",
            "bring your own model",
        ),
        (
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b', S3_BUCKET 'c')",
            "S3_BUCKET is specified more than once",
        ),
        (
            "CREATE MODEL m FROM (DELETE FROM t) TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b')",
            "must hold a SELECT",
        ),
        ("DROP MODEL", "expected a model name"),
        ("SHOW MODEL m extra", "end of statement"),
    ],
)
def test_redshift_rejects(sql: str, message: str) -> None:
    with pytest.raises(MLStatementError, match=None) as info:
        parse(sql)
    assert message in info.value.message
