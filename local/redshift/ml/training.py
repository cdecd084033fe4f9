"""Turn a training query's Arrow result into a trained model, the way Redshift ML would.

`prepare` applies Redshift's data rules synchronously (so CREATE MODEL fails fast and leaves
nothing behind); `train` runs in the background thread: AUTO OFF trains one XGBoost booster with the
given objective and hyperparameters, AUTO ON runs a time-boxed search over a linear baseline and a
few XGBoost configurations and keeps the best by the objective on a held-out validation split.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb
from sklearn import metrics as skm

from .models import predict_raw
from .statements import XGBOOST_HYPERPARAMETERS, CreateModel, MLStatementError

MIN_TRAINING_ROWS = 500
VALIDATION_FRACTION = 0.2
SEED = 0
EXPLAIN_SAMPLE_ROWS = 2000
MAX_CLASSES = 100
INVALID_DATA = "22000"


@dataclass
class Column:
    name: str
    duck_type: str  # DuckDB type of the UDF parameter / return value
    redshift_type: str  # what SHOW MODEL prints
    vocabulary: list[str] | None = None  # AUTO ON VARCHAR inputs: training values, coded by position


@dataclass
class TrainingData:
    features: list[Column]
    target: Column
    x: np.ndarray  # float32, NaN for NULL
    y: np.ndarray  # target values (numbers or objects), no NULLs
    rows_total: int
    rows_used: int


@dataclass
class TrainedModel:
    booster: xgb.Booster
    algorithm: str  # xgboost | linear
    problem_type: str  # BinaryClassification | MulticlassClassification | Regression
    objective: str  # what SHOW MODEL prints (AUTO ON: F1...; AUTO OFF: binary:logistic...)
    xgb_objective: str
    classes: list[Any] | None  # class labels in encoded order, None for regression
    metrics: dict[str, float]  # e.g. {"validation:f1": 0.93, "train:f1": 0.95}
    params: dict[str, Any]
    num_round: int
    explanation: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)


# Arrow type test -> (DuckDB type, Redshift type) of a column of that type, in order.
_TYPES: list[tuple[Any, str, str]] = [
    (pa.types.is_boolean, "BOOLEAN", "bool"),
    (lambda t: pa.types.is_int8(t) or pa.types.is_int16(t), "SMALLINT", "int2"),
    (pa.types.is_int32, "INTEGER", "int4"),
    (pa.types.is_integer, "BIGINT", "int8"),
    (pa.types.is_float32, "FLOAT", "float4"),
    (pa.types.is_floating, "DOUBLE", "float8"),
    (pa.types.is_decimal, "DECIMAL", "numeric"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "VARCHAR", "varchar"),
]


def _target_types(arrow_type: pa.DataType) -> tuple[str, str] | None:
    """(DuckDB type, Redshift type) of a column: the prediction function returns the target's own type."""
    for matches, duck_type, redshift_type in _TYPES:
        if matches(arrow_type):
            if duck_type == "DECIMAL":
                duck_type = f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
            return duck_type, redshift_type
    return None


def _column_types(arrow_type: pa.DataType) -> tuple[str, str] | None:
    """(DuckDB type, Redshift type) of a feature column, None when the emulator cannot use it: numbers
    reach the model as DOUBLE; VARCHAR is handled by the caller (AUTO ON vocabularies)."""
    types = _target_types(arrow_type)
    if types is None or types[1] == "varchar":
        return None
    return ("BOOLEAN" if types[1] == "bool" else "DOUBLE"), types[1]


def features_matrix(
    columns: list[pa.Array | pa.ChunkedArray], vocabularies: list[list[str] | None] | None = None
) -> np.ndarray:
    """Arrow columns -> float32 matrix with NaN for NULL (XGBoost's missing value).

    A VARCHAR column becomes its value's position in the training vocabulary (unknown values: NaN).
    """
    n = len(columns[0]) if columns else 0
    x = np.empty((n, len(columns)), dtype=np.float32)
    for j, col in enumerate(columns):
        vocabulary = vocabularies[j] if vocabularies else None
        if vocabulary is not None:
            col = pc.index_in(col, value_set=pa.array(vocabulary, type=pa.string()))
        if pa.types.is_boolean(col.type) or pa.types.is_decimal(col.type):
            col = pc.cast(col, pa.float64())
        x[:, j] = (
            col.to_numpy(zero_copy_only=False)
            if col.null_count == 0
            else pc.fill_null(pc.cast(col, pa.float64()), math.nan).to_numpy(zero_copy_only=False)
        )
    return x


def prepare(table: pa.Table, statement: CreateModel) -> TrainingData:
    names = [n.lower() for n in table.column_names]
    table = table.rename_columns(names)
    if len(set(names)) != len(names):
        raise MLStatementError("the training query returns duplicate column names", INVALID_DATA)
    if len(names) < 2:
        raise MLStatementError("the training query must return at least two columns", INVALID_DATA)
    if statement.target not in names:
        raise MLStatementError(
            f'target column "{statement.target}" does not exist in the training query (columns: {", ".join(names)})',
            "42703",
        )
    target_col = table.column(statement.target)
    target_types = _target_types(target_col.type)
    if target_types is None:
        raise MLStatementError(
            f'target column "{statement.target}" has unsupported type {target_col.type}', INVALID_DATA
        )
    features = []
    for name in names:
        if name == statement.target:
            continue
        column_type = table.column(name).type
        if statement.auto and (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            values = pc.unique(table.column(name).drop_null()).to_pylist()
            features.append(Column(name, "VARCHAR", "varchar", sorted(values)))
            continue
        types = _column_types(column_type)
        if types is None:
            rule = (
                "AUTO OFF takes only numeric or boolean inputs"
                if not statement.auto
                else "the local emulator trains on numeric, boolean and VARCHAR inputs only"
            )
            raise MLStatementError(f'column "{name}" has type {table.column(name).type}: {rule}', "42804")
        features.append(Column(name, *types))
    if statement.function_arg_types is not None and len(statement.function_arg_types) != len(features):
        raise MLStatementError(
            f"FUNCTION declares {len(statement.function_arg_types)} argument types but the training query "
            f"has {len(features)} input columns",
            INVALID_DATA,
        )
    rows_total = table.num_rows
    table = table.filter(pc.is_valid(table.column(statement.target)))
    # The rows in one canonical order before the seeded sampling and validation split below: a
    # query's row order (a parallel plan's, a table's physical order) is not defined in SQL, and the
    # same training set must give the same model.
    table = table.take(pc.sort_indices(table, sort_keys=[(name, "ascending") for name in names]))
    if table.num_rows < MIN_TRAINING_ROWS:
        raise MLStatementError(
            f"the training data has {table.num_rows} rows with a non-NULL target; "
            f"CREATE MODEL needs at least {MIN_TRAINING_ROWS}",
            INVALID_DATA,
        )
    # MAX_CELLS: rows x columns above the limit -> Redshift samples rows down below it.
    max_rows = statement.max_cells // len(names)
    if table.num_rows > max_rows:
        if max_rows < MIN_TRAINING_ROWS:
            raise MLStatementError(
                f"MAX_CELLS {statement.max_cells} allows only {max_rows} rows of {len(names)} columns; "
                f"CREATE MODEL needs at least {MIN_TRAINING_ROWS}",
                INVALID_DATA,
            )
        keep = np.sort(np.random.default_rng(SEED).choice(table.num_rows, size=max_rows, replace=False))
        table = table.take(pa.array(keep))
    x = features_matrix([table.column(c.name) for c in features], [c.vocabulary for c in features])
    target_col = table.column(statement.target)
    if pa.types.is_string(target_col.type) or pa.types.is_large_string(target_col.type):
        y = np.asarray(target_col.to_pylist(), dtype=object)
    else:
        y = pc.cast(target_col, pa.float64()).to_numpy(zero_copy_only=False)
    return TrainingData(features, Column(statement.target, *target_types), x, y, rows_total, table.num_rows)


def check_target(data: TrainingData, statement: CreateModel) -> None:
    """Target values the chosen AUTO OFF objective cannot learn are rejected up front."""
    if statement.auto:
        return
    if data.y.dtype == object:
        raise MLStatementError("AUTO OFF needs a numeric or boolean target column", "42804")
    objective = statement.objective
    values = np.unique(data.y)
    if objective in ("binary:logistic", "binary:hinge") and not set(values.tolist()) <= {0.0, 1.0}:
        raise MLStatementError(f"OBJECTIVE '{objective}' needs a target of 0 and 1 values", INVALID_DATA)
    if objective == "reg:logistic" and (values.min() < 0 or values.max() > 1):
        raise MLStatementError("OBJECTIVE 'reg:logistic' needs target values in [0, 1]", INVALID_DATA)
    if objective == "multi:softmax":
        num_class = int(statement.hyperparameters["NUM_CLASS"])
        if not np.all((values >= 0) & (values < num_class) & (values == np.round(values))):
            raise MLStatementError(
                f"multi:softmax needs integer target values in [0, {num_class})", INVALID_DATA
            )


def infer_problem_type(y: np.ndarray) -> str:
    """Like SageMaker Autopilot: two values -> binary; few discrete values -> multiclass; else regression."""
    values = np.unique(y)
    if len(values) == 2:
        return "BINARY_CLASSIFICATION"
    if y.dtype == object:
        return "MULTICLASS_CLASSIFICATION"
    if len(values) <= min(MAX_CLASSES, max(3, len(y) // 10)) and np.all(values == np.round(values)):
        return "MULTICLASS_CLASSIFICATION"
    return "REGRESSION"


# -- training -----------------------------------------------------------------------------------

_PROBLEM_NAMES = {
    "BINARY_CLASSIFICATION": "BinaryClassification",
    "MULTICLASS_CLASSIFICATION": "MulticlassClassification",
    "REGRESSION": "Regression",
}
_DEFAULT_OBJECTIVE = {
    "BINARY_CLASSIFICATION": "F1",
    "MULTICLASS_CLASSIFICATION": "Accuracy",
    "REGRESSION": "MSE",
}


class _Deadline(xgb.callback.TrainingCallback):
    """Stops boosting at MAX_RUNTIME or when the emulator shuts down (keeps the rounds done so far)."""

    def __init__(self, deadline: float, stop: threading.Event) -> None:
        super().__init__()
        self.deadline = deadline
        self.stop = stop

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.deadline


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SEED).permutation(n)
    n_valid = max(1, int(n * VALIDATION_FRACTION))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def train(data: TrainingData, statement: CreateModel, stop: threading.Event) -> TrainedModel:
    deadline = time.monotonic() + statement.max_runtime
    if statement.auto:
        return _train_auto(data, statement, deadline, stop)
    return _train_xgboost(data, statement, deadline, stop)


def _train_xgboost(
    data: TrainingData, s: CreateModel, deadline: float, stop: threading.Event
) -> TrainedModel:
    params: dict[str, Any] = {"objective": s.objective, "seed": SEED, "verbosity": 0}
    num_round, early_stopping = 100, None
    for key, value in s.hyperparameters.items():
        name, kind = XGBOOST_HYPERPARAMETERS[key]
        if name == "num_boost_round":
            num_round = int(value)
        elif name == "early_stopping_rounds":
            early_stopping = int(value)
        else:
            params[name] = kind(value)
    train_idx, valid_idx = _split(len(data.y))
    names = [c.name for c in data.features]
    if params.get("tree_method", "hist") == "hist":  # quantised once: less memory and time than DMatrix
        max_bin = params.get("max_bin", 256)  # both matrices and the booster must agree on it
        dtrain = xgb.QuantileDMatrix(
            data.x[train_idx], label=data.y[train_idx], feature_names=names, max_bin=max_bin
        )
        dvalid = xgb.QuantileDMatrix(
            data.x[valid_idx], label=data.y[valid_idx], feature_names=names, ref=dtrain, max_bin=max_bin
        )
    else:
        dtrain = xgb.DMatrix(data.x[train_idx], label=data.y[train_idx], feature_names=names)
        dvalid = xgb.DMatrix(data.x[valid_idx], label=data.y[valid_idx], feature_names=names)
    evals_result: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_round,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        evals_result=evals_result,
        early_stopping_rounds=early_stopping,
        callbacks=[_Deadline(deadline, stop)],
        verbose_eval=False,
    )
    found = {
        f"{split}:{metric}": float(values[-1])
        for split, log in evals_result.items()
        for metric, values in log.items()
    }
    metrics = {k: found[k] for k in sorted(found, key=lambda k: (not k.startswith("validation"), k))}
    if s.objective.startswith("binary:"):
        problem, classes = "BINARY_CLASSIFICATION", [0, 1]
    elif s.objective.startswith("multi:"):
        problem, classes = "MULTICLASS_CLASSIFICATION", list(range(int(s.hyperparameters["NUM_CLASS"])))
    else:
        problem, classes = "REGRESSION", None
    return TrainedModel(
        booster=booster,
        algorithm="xgboost",
        problem_type=_PROBLEM_NAMES[problem],
        objective=s.objective,
        xgb_objective=s.objective,
        classes=classes,
        metrics=metrics,
        params=params,
        num_round=booster.num_boosted_rounds(),
        explanation=explain(booster, data, valid_idx),
    )


# AUTO ON candidates: a linear baseline and XGBoost configurations, cheapest first.
_CANDIDATES: list[tuple[str, dict[str, Any], int]] = [
    ("linear", {"booster": "gblinear", "eta": 0.5, "lambda": 0.0, "alpha": 0.0}, 50),
    ("xgboost", {"max_depth": 3, "eta": 0.3}, 100),
    ("xgboost", {"max_depth": 6, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8}, 300),
    ("xgboost", {"max_depth": 6, "eta": 0.1, "balanced": True}, 300),
    ("xgboost", {"max_depth": 9, "eta": 0.05, "min_child_weight": 3, "subsample": 0.8}, 500),
]


def _score(objective: str, y_true: np.ndarray, raw: np.ndarray, problem: str) -> float:
    """The AUTO ON objective on validation data: larger is better (MSE is negated)."""
    if problem == "REGRESSION":
        return -float(np.mean((raw - y_true) ** 2))  # MSE, negated so that larger is better
    if problem == "BINARY_CLASSIFICATION":
        proba = raw
        pred = (proba > 0.5).astype(int)
    else:
        proba = raw
        pred = raw.argmax(axis=1)
    if objective == "AUC":
        return float(skm.roc_auc_score(y_true, proba, multi_class="ovr") if problem != "REGRESSION" else 0.0)
    if objective == "ACCURACY":
        return float(skm.accuracy_score(y_true, pred))
    if objective == "F1_MACRO":
        return float(skm.f1_score(y_true, pred, average="macro", zero_division=0))
    if objective == "F1":
        return float(skm.f1_score(y_true, pred, zero_division=0))
    raise MLStatementError(f"OBJECTIVE {objective} does not fit problem type {problem}", "22023")


def _train_auto(data: TrainingData, s: CreateModel, deadline: float, stop: threading.Event) -> TrainedModel:
    problem = s.problem_type or infer_problem_type(data.y)
    objective = (s.objective or _DEFAULT_OBJECTIVE[problem]).upper()
    if objective in ("F1", "AUC") and problem != "BINARY_CLASSIFICATION":
        raise ValueError(f"OBJECTIVE {objective} needs a binary classification problem, not {problem}")
    if objective == "MSE" and problem != "REGRESSION":
        raise ValueError(f"OBJECTIVE MSE needs a regression problem, not {problem}")
    if objective in ("ACCURACY", "F1_MACRO") and problem == "REGRESSION":
        raise ValueError(f"OBJECTIVE {objective} needs a classification problem")
    classes: list[Any] | None = None
    y = data.y
    if problem != "REGRESSION":
        values = np.unique(data.y)
        if problem == "BINARY_CLASSIFICATION" and len(values) != 2:
            raise ValueError(f"PROBLEM_TYPE BINARY_CLASSIFICATION needs 2 target values, found {len(values)}")
        if len(values) > MAX_CLASSES:
            raise ValueError(f"the target has {len(values)} classes; at most {MAX_CLASSES} are supported")
        classes = [v.item() if isinstance(v, np.generic) else v for v in values]
        y = np.searchsorted(values, data.y).astype(np.float32)
    xgb_objective = {
        "BINARY_CLASSIFICATION": "binary:logistic",
        "MULTICLASS_CLASSIFICATION": "multi:softprob",
        "REGRESSION": "reg:squarederror",
    }[problem]
    train_idx, valid_idx = _split(len(y))
    names = [c.name for c in data.features]
    dtrain = xgb.DMatrix(data.x[train_idx], label=y[train_idx], feature_names=names)
    dvalid = xgb.DMatrix(data.x[valid_idx], label=y[valid_idx], feature_names=names)
    positives = float(np.sum(y[train_idx] == 1)) if problem == "BINARY_CLASSIFICATION" else 0.0
    allowed = {None: ("linear", "xgboost"), "XGBOOST": ("xgboost",), "LINEAR_LEARNER": ("linear",)}[
        s.model_type
    ]
    best: tuple[float, str, xgb.Booster, dict[str, Any]] | None = None
    candidates = []
    for algorithm, config, rounds in _CANDIDATES:
        if algorithm not in allowed:
            continue
        if best is not None and (stop.is_set() or time.monotonic() >= deadline):
            break
        params = {k: v for k, v in config.items() if k != "balanced"}
        if config.get("balanced"):
            if problem != "BINARY_CLASSIFICATION" or positives == 0:
                continue
            params["scale_pos_weight"] = math.sqrt((len(train_idx) - positives) / positives)
        params.update({"objective": xgb_objective, "seed": SEED, "verbosity": 0})
        if classes is not None and problem == "MULTICLASS_CLASSIFICATION":
            params["num_class"] = len(classes)
        started = time.monotonic()
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=[(dvalid, "validation")],
            early_stopping_rounds=20 if algorithm == "xgboost" else None,
            callbacks=[_Deadline(deadline, stop)],
            verbose_eval=False,
        )
        if algorithm == "xgboost" and booster.best_iteration + 1 < booster.num_boosted_rounds():
            booster = booster[: booster.best_iteration + 1]
        score = _score(objective, y[valid_idx], predict_raw(booster, data.x[valid_idx]), problem)
        candidates.append(
            {
                "algorithm": algorithm,
                "params": params,
                "rounds": booster.num_boosted_rounds(),
                "score": score,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        if best is None or score > best[0]:
            best = (score, algorithm, booster, params)
    assert best is not None  # the first candidate always runs
    score, algorithm, booster, params = best
    metric_value = -score if objective == "MSE" else score
    train_score = _score(objective, y[train_idx], predict_raw(booster, data.x[train_idx]), problem)
    return TrainedModel(
        booster=booster,
        algorithm=algorithm,
        problem_type=_PROBLEM_NAMES[problem],
        objective={"ACCURACY": "Accuracy", "F1_MACRO": "F1_Macro"}.get(objective, objective),
        xgb_objective=xgb_objective,
        classes=classes,
        metrics={
            f"validation:{objective.lower()}": metric_value,
            f"train:{objective.lower()}": -train_score if objective == "MSE" else train_score,
        },
        params=params,
        num_round=booster.num_boosted_rounds(),
        explanation=explain(booster, data, valid_idx),
        candidates=candidates,
    )


def explain(booster: xgb.Booster, data: TrainingData, rows: np.ndarray) -> dict[str, Any]:
    """Global Shapley values: mean |SHAP| per feature over validation rows, in Redshift's report shape.

    XGBoost computes exact TreeSHAP (linear SHAP for gblinear) contributions in margin space;
    Redshift's report comes from SageMaker Clarify's kernel SHAP, hence the same key names.
    """
    sample = rows[:EXPLAIN_SAMPLE_ROWS]
    contributions = booster.predict(
        xgb.DMatrix(data.x[sample], feature_names=[c.name for c in data.features]), pred_contribs=True
    )
    if contributions.ndim == 2:
        contributions = contributions[:, None, :]
    labels = {}
    for k in range(contributions.shape[1]):
        per_feature = np.abs(contributions[:, k, :-1]).mean(axis=0)
        labels[f"label{k}"] = {
            "global_shap_values": {
                c.name: round(float(v), 6) for c, v in zip(data.features, per_feature, strict=True)
            },
            "expected_value": round(float(contributions[:, k, -1].mean()), 6),
        }
    return {"version": "1.0", "explanations": {"kernel_shap": labels}}
