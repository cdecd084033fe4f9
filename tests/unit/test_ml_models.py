"""Redshift ML on the engine: training states, SHOW MODEL, prediction UDFs vs the model itself, errors,
MAX_CELLS sampling and restart. Statements go through `Engine.execute` (the ML hook), on small data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from local.redshift.engine import Engine, RedshiftError

pytestmark = pytest.mark.unit

N_ROWS = 2000
SETTINGS = "SETTINGS (S3_BUCKET 'bucket', MAX_RUNTIME 30)"
AUTO_OFF = (
    "CREATE MODEL {name} FROM (SELECT amount, night, ratio, is_fraud FROM train_data) TARGET is_fraud "
    "FUNCTION {function} IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE '{objective}' "
    "PREPROCESSORS 'none' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '15', MAX_DEPTH '4') " + SETTINGS
)


def _training_table(n: int = N_ROWS, seed: int = 7) -> pa.Table:
    """Learnable synthetic transactions: fraud = large amount at night, or a high ratio."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    night = rng.random(n) < 0.25
    ratio = rng.random(n)
    fraud = ((amount > 120) & night) | (ratio > 0.93)
    return pa.table(
        {
            "amount": pa.array(amount).cast(pa.decimal128(9, 2)),
            "night": night,
            "ratio": ratio,
            "is_fraud": pa.array(fraud.astype(np.int32)),
            "label": pa.array(np.where(fraud, "fraud", "genuine")),
            "spend": amount / 100 + night + rng.normal(0, 0.05, n),  # a regression target
            "segment": pa.array(np.where(ratio > 0.93, "risky", rng.choice(["shop", "web"], n))),
            "note": pa.array(["x"] * n),
        }
    )


def _load(engine: Engine, table: pa.Table, name: str) -> None:
    con = engine.cursor()
    try:
        con.register("incoming", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming")
    finally:
        con.close()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ml") / "redshift.duckdb"


@pytest.fixture(scope="module")
def engine(db_path: Path) -> Iterator[Engine]:
    eng = Engine(db_path, auto_refresh_interval=None)
    _load(eng, _training_table(), "train_data")
    _load(eng, _training_table(400, seed=8), "small_data")
    try:
        yield eng
    finally:
        eng.close()


def _show(engine: Engine, name: str) -> dict[str, str]:
    return dict(engine.execute(f"SHOW MODEL {name}").rows)


@pytest.fixture(scope="module")
def trained(engine: Engine) -> dict[str, str]:
    """Three models trained in parallel: AUTO OFF binary:logistic and reg:logistic, and AUTO ON."""
    engine.execute(AUTO_OFF.format(name="m_class", function="fn_class", objective="binary:logistic"))
    states = {"m_class": _show(engine, "m_class")["Model State"]}
    engine.execute(AUTO_OFF.format(name="m_score", function="fn_score", objective="reg:logistic"))
    engine.execute(
        "CREATE MODEL m_auto FROM (SELECT amount, night, segment, label FROM train_data) TARGET label "
        "FUNCTION fn_auto IAM_ROLE default SETTINGS (S3_BUCKET 'bucket', MAX_RUNTIME 5)"
    )
    for name in ("m_class", "m_score", "m_auto"):
        assert engine.ml.wait(name, timeout=120) == "READY", _show(engine, name)
    return states


def test_training_is_asynchronous_and_ends_ready(engine: Engine, trained: dict[str, str]) -> None:
    assert trained["m_class"] == "TRAINING"  # CREATE MODEL returned before training finished
    show = _show(engine, "m_class")
    assert show["Model State"] == "READY"
    assert 0 <= float(show["validation:logloss"]) < 0.4
    assert show["Model Type"] == "xgboost"
    assert show["Function Name"] == "fn_class"
    assert show["Function Parameters"] == "amount night ratio"
    assert show["Function Parameter Types"] == "numeric bool float8"
    assert show["Function Return Type"] == "int4"
    assert show["Target Column"] == "IS_FRAUD"
    assert show["num_round"] == "15" and show["objective"] == "binary:logistic"
    assert float(show["Training Time"].split()[0]) > 0
    assert show["Training Rows"] == f"{N_ROWS} of {N_ROWS}"


def _features(engine: Engine) -> np.ndarray:
    rows = engine.execute(
        "SELECT amount::float8, night::int::float8, ratio FROM train_data ORDER BY ratio"
    ).rows
    return np.asarray(rows, dtype=np.float32)


def test_class_function_equals_the_model(engine: Engine, trained: dict[str, str]) -> None:
    sql_classes = [
        r[0]
        for r in engine.execute("SELECT fn_class(amount, night, ratio) FROM train_data ORDER BY ratio").rows
    ]
    booster = engine.ml.predictor("m_class").booster
    direct = (booster.inplace_predict(_features(engine)) > 0.5).astype(int)
    assert sql_classes == direct.tolist()
    assert set(sql_classes) == {0, 1}
    accuracy = engine.execute(
        "SELECT avg((fn_class(amount, night, ratio) = is_fraud)::int::float8) FROM train_data"
    )
    assert accuracy.rows[0][0] > 0.95


def test_reg_logistic_returns_the_probability(engine: Engine, trained: dict[str, str]) -> None:
    scores = np.array(
        [
            r[0]
            for r in engine.execute(
                "SELECT fn_score(amount, night, ratio) FROM train_data ORDER BY ratio"
            ).rows
        ]
    )
    direct = engine.ml.predictor("m_score").booster.inplace_predict(_features(engine))
    np.testing.assert_allclose(scores, direct, rtol=1e-6)
    # probabilities, not the 0 / 1 of a class: a logistic output is never exactly 0 or 1 (this rule is
    # learnt with a few leaves, so there are few distinct values)
    assert ((scores > 0) & (scores < 1)).all() and len(np.unique(scores)) > 2
    assert _show(engine, "m_score")["Function Return Type"] == "float8"


def test_auto_on_class_and_probabilities(engine: Engine, trained: dict[str, str]) -> None:
    show = _show(engine, "m_auto")
    assert show["Model Type"] == "auto"
    assert show["Problem Type"] == "BinaryClassification"
    assert show["Objective"] == "F1"
    assert 0.8 < float(show["validation:f1"]) <= 1.0
    assert show["Selected Algorithm"] in ("xgboost", "linear")
    rows = engine.execute(
        "SELECT fn_auto(amount, night, segment), fn_auto_probabilities(amount, night, segment) FROM train_data"
    ).rows
    for label, report in rows[:200]:
        parsed = json.loads(report)
        assert parsed["labels"] == ["fraud", "genuine"]
        probabilities = parsed["probabilities"]
        assert all(0 <= p <= 1 for p in probabilities) and abs(sum(probabilities) - 1) < 1e-5
        assert label == parsed["labels"][int(np.argmax(probabilities))]
    assert {r[0] for r in rows} == {"fraud", "genuine"}
    # VARCHAR inputs (AUTO ON only) are coded by the training vocabulary; unseen values are missing.
    assert show["Function Parameter Types"] == "numeric bool varchar"
    assert engine.execute("SELECT fn_auto(10.0, false, 'risky'), fn_auto(10.0, false, 'shop')").rows == [
        ("fraud", "genuine")
    ]
    assert engine.execute("SELECT fn_auto(10.0, false, 'never seen')").rows[0][0] in ("fraud", "genuine")


def test_explain_model_reports_every_feature(engine: Engine, trained: dict[str, str]) -> None:
    report = json.loads(engine.execute("SELECT explain_model('public.m_class')").rows[0][0])
    label0 = report["explanations"]["kernel_shap"]["label0"]
    assert set(label0["global_shap_values"]) == {"amount", "night", "ratio"}
    assert all(v > 0 for v in label0["global_shap_values"].values())
    assert report["version"] == "1.0"
    with pytest.raises(RedshiftError, match='model "nope" does not exist'):
        engine.execute("SELECT explain_model('nope')")


def test_show_model_all_lists_models(engine: Engine, trained: dict[str, str]) -> None:
    result = engine.execute("SHOW MODEL ALL")
    assert [c.name for c in result.columns] == ["Schema Name", "Model Name"]
    assert {("public", "m_class"), ("public", "m_score"), ("public", "m_auto")} <= set(result.rows)


def test_wrong_argument_count_or_type_is_a_clear_error(engine: Engine, trained: dict[str, str]) -> None:
    # DuckDB's binder checks the UDF signature (3 arguments: DOUBLE, BOOLEAN, DOUBLE) before any row runs.
    with pytest.raises(RedshiftError, match=r"No function matches .*'fn_class\(DECIMAL\(9,2\), BOOLEAN\)'"):
        engine.execute("SELECT fn_class(amount, night) FROM train_data")
    with pytest.raises(RedshiftError, match=r"No function matches .*'fn_class\(VARCHAR, BOOLEAN, DOUBLE\)'"):
        engine.execute("SELECT fn_class(note, night, ratio) FROM train_data")


def _assert_absent(engine: Engine, name: str) -> None:
    with pytest.raises(RedshiftError, match=f'model "{name}" does not exist'):
        engine.execute(f"SHOW MODEL {name}")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE MODEL bad FROM train_data TARGET no_such_column FUNCTION fn_bad IAM_ROLE default "
            + SETTINGS,
            'target column "no_such_column" does not exist',
        ),
        (
            "CREATE MODEL bad FROM (SELECT amount, is_fraud FROM small_data) TARGET is_fraud FUNCTION fn_bad "
            "IAM_ROLE default " + SETTINGS,
            "needs at least 500",
        ),
        (
            AUTO_OFF.replace("amount, night", "amount, note, night").format(
                name="bad", function="fn_bad", objective="binary:logistic"
            ),
            "AUTO OFF takes only numeric or boolean inputs",
        ),
        (
            AUTO_OFF.replace("SETTINGS (", "SETTINGS (MAX_CELLS 1000, ").format(
                name="bad", function="fn_bad", objective="binary:logistic"
            ),
            "MAX_CELLS 1000 allows only 250 rows",
        ),
        (
            "CREATE MODEL bad FROM (SELECT nope FROM train_data) TARGET nope FUNCTION fn_bad IAM_ROLE default "
            + SETTINGS,
            "the training query failed",
        ),
        (
            "CREATE MODEL bad FROM train_data TARGET is_fraud FUNCTION fn_class IAM_ROLE default " + SETTINGS,
            'function "fn_class" already exists',
        ),
        (
            "CREATE MODEL bad FROM train_data TARGET is_fraud FUNCTION abs IAM_ROLE default " + SETTINGS,
            'function "abs" already exists',
        ),
        (
            "CREATE MODEL bad FROM train_data TARGET is_fraud FUNCTION fn_bad IAM_ROLE default",
            "expected SETTINGS",
        ),
    ],
)
def test_rejected_create_leaves_nothing_behind(
    engine: Engine, trained: dict[str, str], sql: str, message: str
) -> None:
    with pytest.raises(RedshiftError) as info:
        engine.execute(sql)
    assert message in info.value.message
    _assert_absent(engine, "bad")
    assert not (Path(engine.path + ".models") / "models" / "bad.json").exists()


def test_duplicate_model_name_is_refused(engine: Engine, trained: dict[str, str]) -> None:
    with pytest.raises(RedshiftError, match='model "m_class" already exists'):
        engine.execute(AUTO_OFF.format(name="m_class", function="fn_other", objective="binary:logistic"))


def test_drop_model(engine: Engine, trained: dict[str, str]) -> None:
    with pytest.raises(RedshiftError, match='model "never_created" does not exist'):
        engine.execute("DROP MODEL never_created")
    engine.execute("DROP MODEL IF EXISTS never_created")  # no error
    engine.execute(AUTO_OFF.format(name="m_drop", function="fn_drop", objective="binary:logistic"))
    assert engine.ml.wait("m_drop", timeout=120) == "READY"
    assert engine.execute("SELECT count(fn_drop(amount, night, ratio)) FROM train_data").rows == [(N_ROWS,)]
    engine.execute("DROP MODEL m_drop")
    _assert_absent(engine, "m_drop")
    with pytest.raises(RedshiftError, match="fn_drop"):
        engine.execute("SELECT fn_drop(amount, night, ratio) FROM train_data")
    # the name and the function name are free again
    engine.execute(AUTO_OFF.format(name="m_drop", function="fn_drop", objective="binary:logistic"))
    engine.execute("DROP MODEL m_drop")  # dropping while TRAINING stops it and leaves nothing
    assert engine.ml.wait("m_drop", timeout=5) == "DROPPED"


def test_failed_model_reports_reason_and_must_be_dropped(engine: Engine, trained: dict[str, str]) -> None:
    create = (
        "CREATE MODEL m_fail FROM (SELECT amount, night, ratio FROM train_data) TARGET ratio FUNCTION fn_fail "
        "IAM_ROLE default PROBLEM_TYPE REGRESSION OBJECTIVE 'F1' " + SETTINGS
    )
    engine.execute(create)
    assert engine.ml.wait("m_fail", timeout=60) == "FAILED"
    show = _show(engine, "m_fail")
    assert "F1 needs a binary classification problem" in show["Failure Reason"]
    with pytest.raises(RedshiftError, match='model "m_fail" already exists and is FAILED: drop it'):
        engine.execute(create)
    engine.execute("DROP MODEL m_fail")
    _assert_absent(engine, "m_fail")


def test_max_cells_samples_the_training_rows(engine: Engine, trained: dict[str, str]) -> None:
    engine.execute(
        AUTO_OFF.replace("SETTINGS (", "SETTINGS (MAX_CELLS 2400, ").format(
            name="m_cells", function="fn_cells", objective="binary:logistic"
        )
    )
    try:
        assert engine.ml.wait("m_cells", timeout=120) == "READY"
        assert _show(engine, "m_cells")["Training Rows"] == f"600 of {N_ROWS}"  # 2400 cells / 4 columns
    finally:
        engine.execute("DROP MODEL m_cells")


def test_models_survive_a_restart(db_path: Path, engine: Engine, trained: dict[str, str]) -> None:
    query = (
        "SELECT fn_class(amount, night, ratio), fn_score(amount, night, ratio) FROM train_data ORDER BY ratio"
    )
    before = engine.execute(query).rows
    # A second engine on a copy of the data directory plays the restarted emulator.
    restarted_path = db_path.parent / "restarted" / "redshift.duckdb"
    restarted_path.parent.mkdir()
    con = engine.cursor()
    try:
        con.execute(f"COPY train_data TO '{restarted_path.parent / 'train.parquet'}' (FORMAT parquet)")
    finally:
        con.close()
    models = Path(engine.path + ".models")
    target = Path(str(restarted_path) + ".models")
    target.mkdir()
    shutil.copytree(models / "models", target / "models")
    restarted = Engine(restarted_path, auto_refresh_interval=None)
    try:
        restarted.execute(
            f"CREATE TABLE train_data AS SELECT * FROM '{restarted_path.parent / 'train.parquet'}'"
        )
        assert restarted.execute(query).rows == before
        assert _show(restarted, "m_auto")["Model State"] == "READY"
        booster = xgb.Booster()
        booster.load_model(target / "models" / "m_class.xgb.json")
        assert booster.num_boosted_rounds() == 15
    finally:
        restarted.close()


def test_auto_on_infers_regression_and_multiclass(engine: Engine, trained: dict[str, str]) -> None:
    engine.execute(
        "CREATE MODEL m_reg FROM (SELECT amount, night, spend FROM train_data) TARGET spend FUNCTION fn_reg "
        "IAM_ROLE default MODEL_TYPE XGBOOST SETTINGS (S3_BUCKET 'bucket', MAX_RUNTIME 3)"
    )
    engine.execute(
        "CREATE MODEL m_multi FROM (SELECT amount, ratio, segment FROM train_data) TARGET segment "
        "FUNCTION fn_multi IAM_ROLE default SETTINGS (S3_BUCKET 'bucket', MAX_RUNTIME 3)"
    )
    try:
        assert engine.ml.wait("m_reg", timeout=120) == "READY"
        assert engine.ml.wait("m_multi", timeout=120) == "READY"
        reg = _show(engine, "m_reg")
        assert (reg["Problem Type"], reg["Objective"], reg["Function Return Type"]) == (
            "Regression",
            "MSE",
            "float8",
        )
        assert 0 <= float(reg["validation:mse"]) < 0.01  # the noise alone has variance 0.0025
        values = [
            r[0] for r in engine.execute("SELECT fn_reg(amount, night) FROM train_data ORDER BY ratio").rows
        ]
        direct = engine.ml.predictor("m_reg").raw(np.ascontiguousarray(_features(engine)[:, :2]))
        np.testing.assert_allclose(values, direct, rtol=1e-6)
        with pytest.raises(RedshiftError, match="fn_reg_probabilities"):
            engine.execute("SELECT fn_reg_probabilities(amount, night) FROM train_data")
        multi = _show(engine, "m_multi")
        assert (multi["Problem Type"], multi["Objective"]) == ("MulticlassClassification", "Accuracy")
        assert float(multi["validation:accuracy"]) > 0.5  # "risky" is ratio > 0.93; shop vs web is a coin
        report = json.loads(engine.execute("SELECT fn_multi_probabilities(10.0, 0.99)").rows[0][0])
        assert report["labels"] == ["risky", "shop", "web"] and abs(sum(report["probabilities"]) - 1) < 1e-5
        assert engine.execute("SELECT fn_multi(10.0, 0.99)").rows == [("risky",)]
    finally:
        engine.execute("DROP MODEL IF EXISTS m_reg")
        engine.execute("DROP MODEL IF EXISTS m_multi")


def test_the_training_rows_order_does_not_change_the_model(engine: Engine, trained: dict[str, str]) -> None:
    shuffled = _training_table().take(np.random.default_rng(3).permutation(N_ROWS))
    _load(engine, shuffled, "train_data_shuffled")
    for name, source in (("m_order_a", "train_data"), ("m_order_b", "train_data_shuffled")):
        engine.execute(
            AUTO_OFF.format(name=name, function=f"fn_{name}", objective="reg:logistic").replace(
                "FROM train_data)", f"FROM {source})"
            )
        )
    try:
        for name in ("m_order_a", "m_order_b"):
            assert engine.ml.wait(name, timeout=120) == "READY"
        scores = engine.execute(
            "SELECT fn_m_order_a(amount, night, ratio) = fn_m_order_b(amount, night, ratio) AS same, "
            "count(*) AS n FROM train_data GROUP BY 1"
        ).rows
        assert scores == [(True, N_ROWS)]
        assert _show(engine, "m_order_a")["validation:rmse"] == _show(engine, "m_order_b")["validation:rmse"]
    finally:
        for name in ("m_order_a", "m_order_b"):
            engine.execute(f"DROP MODEL {name}")
        engine.execute("DROP TABLE train_data_shuffled")
