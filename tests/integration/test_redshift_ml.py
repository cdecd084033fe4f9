"""Redshift ML through the Data API: boto3 `redshift-data` -> emulator endpoint -> CREATE MODEL on simulator
history, SHOW MODEL, prediction functions compared with the model itself, errors, and a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pytest

from local.redshift.engine import Engine
from local.redshift.server import start_server
from producer.simulator import WorldConfig, simulate_history

pytestmark = pytest.mark.integration

WORKGROUP = "fraud-wg"
FEATURES = "tx_amount, tx_during_weekend, tx_during_night, tx_hour"
TRAINING_QUERY = f"SELECT {FEATURES}, tx_fraud FROM tx_features WHERE transaction_id % 5 <> 0"
SCORING_QUERY = (
    f"SELECT transaction_id, {FEATURES} FROM tx_features WHERE transaction_id % 5 = 0 ORDER BY transaction_id"
)
CREATE_OFF = (
    f"CREATE MODEL fraud_off FROM ({TRAINING_QUERY}) TARGET tx_fraud FUNCTION fn_fraud_off IAM_ROLE default "
    "AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' PREPROCESSORS 'none' "
    "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '40', MAX_DEPTH '5', MAX_BIN '1024') SETTINGS (S3_BUCKET 'models-bucket')"
)
CREATE_AUTO = (
    f"CREATE MODEL fraud_auto FROM ({TRAINING_QUERY}) TARGET tx_fraud FUNCTION fn_fraud_auto IAM_ROLE default "
    "AUTO ON MODEL_TYPE XGBOOST SETTINGS (S3_BUCKET 'models-bucket', MAX_RUNTIME 8)"
)


def _simulator_table() -> pa.Table:
    """Simulator history with the handbook's calendar features (hour <= 6 is night)."""
    _, history = simulate_history(WorldConfig(n_customers=200, n_terminals=400, n_days=20, seed=5))
    stamps = history.TX_DATETIME
    hour = (stamps.astype("datetime64[h]") - stamps.astype("datetime64[D]")).astype(int)
    weekday = (stamps.astype("datetime64[D]").astype(int) + 3) % 7  # 1970-01-01 was a Thursday (3)
    return pa.table(
        {
            "transaction_id": history.TRANSACTION_ID,
            "tx_amount": pa.array(history.TX_AMOUNT).cast(pa.decimal128(9, 2)),
            "tx_during_weekend": (weekday >= 5).astype(np.int32),
            "tx_during_night": (hour <= 6).astype(np.int32),
            "tx_hour": hour.astype(np.int32),
            "tx_fraud": history.TX_FRAUD.astype(np.int32),
        }
    )


class Emulator:
    """Engine + Data API server on a database file; `restart` reopens both on the same file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._start()

    def _start(self) -> None:
        self.engine = Engine(self.path, auto_refresh_interval=None)
        self.server = start_server(self.engine)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.engine.close()

    def restart(self) -> None:
        self.stop()
        self._start()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(tmp_path_factory.mktemp("redshift-ml") / "redshift.duckdb")
    con = emu.engine.cursor()
    try:  # setup only: the history lands directly in the database; everything under test uses the Data API
        con.register("incoming", _simulator_table())
        con.execute("CREATE TABLE tx_features AS SELECT * FROM incoming")
        con.unregister("incoming")
    finally:
        con.close()
    try:
        yield emu
    finally:
        emu.stop()


def data_api(url: str) -> Any:
    """An unchanged boto3 redshift-data client on the emulator (fake credentials: module fixtures run
    before the per-test autouse fixture that sets them)."""
    return boto3.client(
        "redshift-data",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def client(emulator: Emulator) -> Any:
    return data_api(emulator.url)


def run(client: Any, sql: str, timeout: float = 60) -> dict[str, Any]:
    statement_id = client.execute_statement(Sql=sql, WorkgroupName=WORKGROUP, Database="dev")["Id"]
    deadline = time.monotonic() + timeout
    while True:
        desc = client.describe_statement(Id=statement_id)
        if desc["Status"] in ("FINISHED", "FAILED", "ABORTED"):
            return desc
        assert time.monotonic() < deadline, f"statement still {desc['Status']}"
        time.sleep(0.01)


def query(client: Any, sql: str) -> list[list[Any]]:
    desc = run(client, sql)
    assert desc["Status"] == "FINISHED", desc.get("Error")
    pages = client.get_paginator("get_statement_result").paginate(Id=desc["Id"])
    return [
        [None if "isNull" in f else next(iter(f.values())) for f in record]
        for p in pages
        for record in p["Records"]
    ]


def error_of(client: Any, sql: str) -> str:
    desc = run(client, sql)
    assert desc["Status"] == "FAILED", f"expected a failure, got {desc['Status']}"
    return desc["Error"]


def show_model(client: Any, name: str) -> dict[str, str]:
    return {key: value for key, value in query(client, f"SHOW MODEL {name}")}


def wait_ready(client: Any, name: str, timeout: float = 120) -> tuple[set[str], dict[str, str]]:
    """Poll SHOW MODEL through the Data API until the model leaves TRAINING; returns the states seen."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        show = show_model(client, name)
        seen.add(show["Model State"])
        if show["Model State"] != "TRAINING":
            return seen, show
        assert time.monotonic() < deadline, f"model {name} still TRAINING"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def trained(emulator: Emulator) -> dict[str, Any]:
    client = data_api(emulator.url)
    first = {}
    for name, sql in (("fraud_off", CREATE_OFF), ("fraud_auto", CREATE_AUTO)):
        desc = run(client, sql)
        assert desc["Status"] == "FINISHED", desc.get("Error")
        first[name] = show_model(client, name)["Model State"]
    results = {name: wait_ready(client, name) for name in first}
    return {"first": first, "results": results}


def test_create_model_trains_to_ready(client: Any, trained: dict[str, Any]) -> None:
    for name in ("fraud_off", "fraud_auto"):
        assert trained["first"][name] in ("TRAINING", "READY")  # the statement returned before or at READY
        seen, show = trained["results"][name]
        assert show["Model State"] == "READY", show.get("Failure Reason")
        assert seen <= {"TRAINING", "READY"}
    show = show_model(client, "fraud_off")
    assert show["Model Type"] == "xgboost"
    assert show["Function Name"] == "fn_fraud_off"
    assert show["Function Parameters"] == "tx_amount tx_during_weekend tx_during_night tx_hour"
    assert show["Function Parameter Types"] == "numeric int4 int4 int4"
    assert show["Target Column"] == "TX_FRAUD"
    assert show["Query"] == TRAINING_QUERY
    assert 0 < float(show["validation:logloss"]) < 0.69  # better than a coin
    assert show["num_round"] == "40" and show["objective"] == "binary:logistic"
    assert show["max_bin"] == "1024"  # the training and validation matrices are binned alike
    assert float(show["Training Time"].split()[0]) > 0
    auto = show_model(client, "fraud_auto")
    assert (auto["Problem Type"], auto["Objective"]) == ("BinaryClassification", "F1")
    assert 0 < float(auto["validation:f1"]) <= 1
    assert {"fraud_off", "fraud_auto"} <= {row[1] for row in query(client, "SHOW MODEL ALL")}


def test_sql_predictions_equal_the_models_own(
    client: Any, emulator: Emulator, trained: dict[str, Any]
) -> None:
    features = query(client, SCORING_QUERY)
    x = np.array([[float(v) for v in row[1:]] for row in features], dtype=np.float32)
    predicted = query(
        client,
        f"SELECT transaction_id, fn_fraud_off({FEATURES}) FROM ({SCORING_QUERY}) s ORDER BY transaction_id",
    )
    assert [r[0] for r in predicted] == [r[0] for r in features]
    booster = emulator.engine.ml.predictor("fraud_off").booster
    expected = (booster.inplace_predict(x) > 0.5).astype(int)
    assert [r[1] for r in predicted] == expected.tolist()
    assert 0 < sum(expected) < len(expected)  # both classes occur


def test_probabilities_are_consistent_with_the_class(client: Any, trained: dict[str, Any]) -> None:
    rows = query(
        client,
        f"SELECT fn_fraud_auto({FEATURES}), fn_fraud_auto_probabilities({FEATURES}) FROM ({SCORING_QUERY}) s",
    )
    assert len(rows) > 500
    for label, report in rows:
        parsed = json.loads(report)
        assert parsed["labels"] == [0, 1]
        p_genuine, p_fraud = parsed["probabilities"]
        assert 0 <= p_fraud <= 1 and abs(p_genuine + p_fraud - 1) < 1e-5
        assert label == int(p_fraud > 0.5)


def test_explain_model_through_the_data_api(client: Any, trained: dict[str, Any]) -> None:
    report = json.loads(query(client, "SELECT explain_model('fraud_off')")[0][0])
    shap = report["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    assert set(shap) == {"tx_amount", "tx_during_weekend", "tx_during_night", "tx_hour"}
    assert max(shap, key=shap.get) == "tx_amount"  # scenario 1 frauds are the large amounts


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "CREATE MODEL broken FROM tx_features TARGET tx_fraud IAM_ROLE default",
            'syntax error at or near "IAM_ROLE"',
        ),
        (
            f"CREATE MODEL broken FROM ({TRAINING_QUERY}) TARGET is_fraud FUNCTION fn_broken IAM_ROLE default "
            "SETTINGS (S3_BUCKET 'b')",
            'target column "is_fraud" does not exist',
        ),
        (
            "CREATE MODEL broken FROM (SELECT tx_amount, tx_fraud FROM tx_features LIMIT 499) TARGET tx_fraud "
            "FUNCTION fn_broken IAM_ROLE default SETTINGS (S3_BUCKET 'b')",
            "the training data has 499 rows with a non-NULL target; CREATE MODEL needs at least 500",
        ),
        ("SELECT fn_fraud_off(tx_amount, tx_hour) FROM tx_features", "fn_fraud_off"),
        ("DROP MODEL no_such_model", 'model "no_such_model" does not exist'),
    ],
)
def test_errors_reach_the_client(client: Any, trained: dict[str, Any], sql: str, message: str) -> None:
    error = error_of(client, sql)
    assert message in error
    assert error.startswith("ERROR:")
    assert "broken" not in {row[1] for row in query(client, "SHOW MODEL ALL")}


def test_model_survives_a_restart(emulator: Emulator, trained: dict[str, Any]) -> None:
    scoring = (
        f"SELECT transaction_id, fn_fraud_off({FEATURES}) FROM ({SCORING_QUERY}) s ORDER BY transaction_id"
    )
    before = query(data_api(emulator.url), scoring)
    emulator.restart()
    client = data_api(emulator.url)
    assert show_model(client, "fraud_off")["Model State"] == "READY"
    assert query(client, scoring) == before
    run(client, "DROP MODEL fraud_auto")
    assert error_of(client, "SELECT fn_fraud_auto_probabilities(1, 0, 0, 1)").count(
        "fn_fraud_auto_probabilities"
    )
