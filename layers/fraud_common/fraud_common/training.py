"""train_model: start new model versions and promote READY ones that are not worse.

Each version gets its own model and function name (`<MODEL_NAME>_v<UTC time to the millisecond>`), so
training a new version never disturbs the function the scoring query uses. The registry (`model_registry`)
holds each version's status: training -> ready | failed, ready -> promoted, promoted -> retired.
Named queries used (sql/queries): featurise_history, create_model, register_model (:model_name, :function_name),
models_in_training, set_model_status (:model_name, :status), record_model_metric (:model_name,
:metric), retire_promoted_models, promote_model (:model_name), current_model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from fraud_common import queries
from fraud_common.alerts import current_model
from fraud_common.dataapi import DataApi, StatementError
from fraud_common.settings import IDENTIFIER, SqlSettings

logger = Logger(child=True)
# How long a registered version may stay unknown to SHOW MODEL (Redshift first exports the training set
# to S3) before it counts as failed.
CREATE_GRACE_S = 3600
# Metrics where a smaller value is better; any other validation metric (auc, f1, accuracy) is "higher is better".
LOWER_IS_BETTER = re.compile(r"(error|loss|mse|rmse|mae|logloss)", re.I)


@dataclass
class TrainingOutcome:
    started: str | None = None
    promoted: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    training: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelStatus:
    state: str  # TRAINING, READY, FAILED (SHOW MODEL's "Model State")
    metric_name: str | None = None
    metric: float | None = None

    @property
    def lower_is_better(self) -> bool:
        return bool(self.metric_name and LOWER_IS_BETTER.search(self.metric_name))


def version_names(sql: SqlSettings, now: datetime) -> tuple[str, str]:
    # Milliseconds: two versions started within one second (a retried tick) must not share a name.
    utc = now.astimezone(UTC)
    suffix = f"{utc:v%Y%m%d%H%M%S}{utc.microsecond // 1000:03d}"
    return f"{sql.model_name}_{suffix}", f"{sql.model_function}_{suffix}"


def create_statement_name(model_name: str) -> str:
    """The StatementName of a version's CREATE MODEL (shown by ListStatements and the console)."""
    return f"create model {model_name}"


def featurise_history(api: DataApi, placeholders: Mapping[str, str]) -> int:
    """Features of history rows loaded since the last run, so the new version trains on them too.
    Waits for it (CREATE MODEL reads training_set); a failure raises before any version is registered."""
    featurised = queries.run(api, "featurise_history", placeholders).rows_affected
    logger.info("history featurised before training", extra={"rows": featurised})
    return featurised


def start(api: DataApi, sql: SqlSettings, now: datetime | None = None) -> str:
    """Featurise new history, then register and start CREATE MODEL for a new version; returns the model
    name."""
    model_name, function_name = version_names(sql, now or datetime.now(UTC))
    placeholders = {**sql.placeholders(), "MODEL_NAME": model_name, "MODEL_FUNCTION": function_name}
    featurise_history(api, placeholders)
    # Registered first, then submitted without waiting: on Redshift, CREATE MODEL first exports the
    # training set to S3, which can outlast this function; later checks follow it with SHOW MODEL.
    queries.run(
        api, "register_model", placeholders, {"model_name": model_name, "function_name": function_name}
    )
    try:
        api.submit(queries.load("create_model", placeholders), name=create_statement_name(model_name))
    except Exception:
        # Rejected outright (e.g. bad SQL): recorded now rather than after the grace period.
        queries.run(api, "set_model_status", placeholders, {"model_name": model_name, "status": "failed"})
        raise
    logger.info("model training started", extra={"model_name": model_name, "function_name": function_name})
    return model_name


def show_model(api: DataApi, model_name: str) -> ModelStatus:
    """Read SHOW MODEL's key/value rows: the state and the validation metric (e.g. validation:f1)."""
    if not IDENTIFIER.match(model_name):
        raise ValueError(f"bad model name {model_name!r}")
    try:
        rows = api.query(f"SHOW MODEL {model_name}")
    except StatementError as exc:
        # No such model: its CREATE MODEL may still be exporting the training set, or may have failed.
        logger.info("SHOW MODEL found no model", extra={"model_name": model_name, "error": exc.message})
        return ModelStatus("MISSING")
    pairs = {}
    for row in rows:
        key, value = list(row.values())[:2]
        pairs[str(key).strip()] = str(value).strip() if value is not None else ""
    state = pairs.get("Model State", "").upper() or "TRAINING"
    for key, value in pairs.items():
        if key.lower().startswith("validation:"):
            try:
                return ModelStatus(state, key.split(":", 1)[1], float(value))
            except ValueError:
                continue
    return ModelStatus(state)


def not_worse(candidate: ModelStatus, current: Any) -> bool:
    """Promote when there is no current model, or the candidate's metric is at least as good."""
    if current is None or current.get("validation_metric") is None:
        return True
    if candidate.metric is None:
        return False
    current_metric = float(current["validation_metric"])
    if candidate.lower_is_better:
        return candidate.metric <= current_metric
    return candidate.metric >= current_metric


def check(api: DataApi, sql: SqlSettings, now: datetime | None = None) -> TrainingOutcome:
    """Look at every version still training; record READY/FAILED; promote a READY one not worse.
    A version SHOW MODEL does not know counts as training for CREATE_GRACE_S after it was registered."""
    outcome = TrainingOutcome()
    placeholders = sql.placeholders()
    now = now or datetime.now(UTC)
    for row in queries.run(api, "models_in_training", placeholders).rows:
        name = row["model_name"]
        status = show_model(api, name)
        if status.state == "MISSING":
            status = ModelStatus(
                "TRAINING" if _age_s(row.get("created_at"), now) < CREATE_GRACE_S else "FAILED"
            )
        if status.state == "TRAINING" or status.state not in ("READY", "FAILED"):
            outcome.training.append(name)
            continue
        if status.state == "FAILED":
            queries.run(api, "set_model_status", placeholders, {"model_name": name, "status": "failed"})
            outcome.failed.append(name)
            continue
        if status.metric is not None:
            queries.run(
                api, "record_model_metric", placeholders, {"model_name": name, "metric": status.metric}
            )
        queries.run(api, "set_model_status", placeholders, {"model_name": name, "status": "ready"})
        current = current_model(api, sql)
        if not_worse(status, current):
            api.batch(
                [
                    queries.load("retire_promoted_models", placeholders),
                    queries.load("promote_model", placeholders),
                ],
                {"model_name": name},
                name="promote model",
            )
            outcome.promoted.append(name)
            logger.info("model promoted", extra={"model_name": name, "metric": status.metric})
        else:
            outcome.ready.append(name)
            logger.info(
                "model ready but worse than the current one; not promoted",
                extra={"model_name": name, "metric": status.metric, "current": current},
            )
    return outcome


def _age_s(created_at: Any, now: datetime) -> float:
    """Seconds since a registry timestamp (Redshift's getdate() is UTC, without a zone)."""
    if created_at is None:
        return float("inf")
    created = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(str(created_at))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds()


def tick(
    api: DataApi, sql: SqlSettings, action: str = "check", now: datetime | None = None
) -> TrainingOutcome:
    """`check`: settle versions in training. `start`: also start a new version unless one is training."""
    if action not in ("check", "start"):
        raise ValueError(f"unknown train_model action {action!r}: use 'check' or 'start'")
    outcome = check(api, sql, now)
    if action == "start":
        if outcome.training:
            logger.info(
                "a version is still training; not starting another", extra={"training": outcome.training}
            )
        else:
            outcome.started = start(api, sql, now)
    return outcome
