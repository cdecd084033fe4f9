"""A trained (or training) model: its metadata, its files in the data directory, and its predictions."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import xgboost as xgb

TRAINING, READY, FAILED = "TRAINING", "READY", "FAILED"

_ARROW_TYPES = {
    "BOOLEAN": pa.bool_(),
    "SMALLINT": pa.int16(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
}


def arrow_type(duck_type: str) -> pa.DataType:
    if duck_type.startswith("DECIMAL("):
        precision, scale = duck_type[len("DECIMAL(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return _ARROW_TYPES[duck_type]


@dataclass
class ModelRecord:
    """Everything SHOW MODEL reports and the prediction functions need; persisted as JSON."""

    name: str
    schema: str
    owner: str
    created_at: str  # ISO timestamp (UTC)
    state: str
    query: str
    target: str
    target_duck_type: str
    target_redshift_type: str
    function: str
    feature_names: list[str]
    feature_duck_types: list[str]
    feature_redshift_types: list[str]
    auto: bool
    model_type: str  # auto | xgboost | linear_learner (as SHOW MODEL prints it)
    iam_role: str
    settings: dict[str, str]
    hyperparameters: dict[str, str]
    problem_type: str | None = None
    objective: str | None = None
    xgb_objective: str | None = None
    algorithm: str | None = None
    classes: list[Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    num_round: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    explanation: dict[str, Any] | None = None
    reason: str | None = None
    rows_total: int | None = None
    rows_used: int | None = None
    training_seconds: float | None = None
    job_name: str = ""
    vocabularies: list[list[str] | None] = field(default_factory=list)  # per feature, VARCHAR inputs only

    @property
    def has_probabilities(self) -> bool:
        """Redshift adds <function>_probabilities for AUTO ON classification models."""
        return self.auto and self.classes is not None

    @property
    def returns_probability(self) -> bool:
        """reg:* objectives (e.g. reg:logistic) return the raw score, a float."""
        return (self.xgb_objective or "").startswith("reg:") and not self.auto

    @property
    def return_duck_type(self) -> str:
        return "DOUBLE" if self.returns_probability else self.target_duck_type


class ModelStore:
    """data_dir/models/<name>.json (metadata) and <name>.xgb.json (the booster), written atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "models"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _meta_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _booster_path(self, name: str) -> Path:
        return self.dir / f"{name}.xgb.json"

    def save(self, record: ModelRecord, booster: xgb.Booster | None = None) -> None:
        if booster is not None:
            tmp = self._booster_path(record.name).with_suffix(".tmp.json")
            booster.save_model(tmp)
            os.replace(tmp, self._booster_path(record.name))
        tmp = self._meta_path(record.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1, default=_json_default))
        os.replace(tmp, self._meta_path(record.name))

    def load_all(self) -> list[tuple[ModelRecord, xgb.Booster | None]]:
        loaded = []
        for path in sorted(self.dir.glob("*.json")):
            if path.name.endswith(".xgb.json") or path.name.endswith(".tmp.json"):
                continue
            record = ModelRecord(**json.loads(path.read_text()))
            booster = None
            if record.state == READY:
                import xgboost as xgb  # loaded only when there is a model to serve

                booster = xgb.Booster()
                booster.load_model(self._booster_path(record.name))
            loaded.append((record, booster))
        return loaded

    def delete(self, name: str) -> None:
        for path in (self._meta_path(name), self._booster_path(name)):
            path.unlink(missing_ok=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def is_linear(booster: xgb.Booster) -> bool:
    return json.loads(booster.save_config())["learner"]["gradient_booster"]["name"] == "gblinear"


def predict_raw(booster: xgb.Booster, x: np.ndarray, linear: bool | None = None) -> np.ndarray:
    """The booster's output (probability, class index or value); in-place (no DMatrix copy) for trees."""
    if len(x) == 0:
        return np.empty((0,), dtype=np.float32)
    if linear if linear is not None else is_linear(booster):  # gblinear has no in-place prediction
        import xgboost as xgb

        return booster.predict(xgb.DMatrix(x, feature_names=booster.feature_names))
    return booster.inplace_predict(x)


class Predictor:
    """Applies a READY model to a float32 feature matrix with Redshift's output semantics."""

    def __init__(self, record: ModelRecord, booster: xgb.Booster) -> None:
        self.record = record
        self.booster = booster
        self.out_type = arrow_type(record.return_duck_type)
        self.classes = None if record.classes is None else np.asarray(record.classes, dtype=object)
        self.linear = is_linear(booster)

    def raw(self, x: np.ndarray) -> np.ndarray:
        return predict_raw(self.booster, x, self.linear)

    def predict(self, x: np.ndarray) -> pa.Array:
        raw = self.raw(x)
        objective = self.record.xgb_objective
        if self.classes is None:  # regression: the score itself (reg:logistic -> a probability)
            values = pa.array(raw.astype(np.float64))
            if pa.types.is_integer(self.out_type):
                values = pc.round(values)
            return values.cast(self.out_type, safe=False)
        if objective == "binary:logistic":
            index = (raw > 0.5).astype(np.int64)
        elif objective == "multi:softprob":
            index = raw.argmax(axis=1) if len(raw) else np.empty(0, dtype=np.int64)
        else:  # binary:hinge and multi:softmax already output the class index
            index = raw.astype(np.int64)
        labels = self.classes[index]
        if pa.types.is_string(self.out_type):
            return pa.array(labels.tolist(), type=pa.string())
        return pa.array(labels.astype(np.float64)).cast(self.out_type, safe=False)

    def probabilities(self, x: np.ndarray) -> list[str]:
        """SUPER {"probabilities": [...], "labels": [...]} per row, labels in class order."""
        raw = self.raw(x)
        matrix = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
        labels = self.record.classes
        return [
            json.dumps(
                {"probabilities": [round(float(p), 6) for p in row], "labels": labels}, separators=(",", ":")
            )
            for row in matrix
        ]
