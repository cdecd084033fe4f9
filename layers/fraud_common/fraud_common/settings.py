"""Settings from environment variables, validated once per cold start.

Each function reads only the groups it needs, so `act_on_alert` does not require Redshift settings.
A missing or malformed variable raises `SettingsError` naming the variable and what it is for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsError(ValueError):
    """An environment variable is missing or invalid."""


def _get(env: Mapping[str, str], name: str, purpose: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is not None:
        return default
    raise SettingsError(f"missing environment variable {name} ({purpose})")


def _number(env: Mapping[str, str], name: str, purpose: str, default: str, kind: type = float) -> float:
    raw = _get(env, name, purpose, default)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(
            f"environment variable {name}={raw!r} is not a {kind.__name__} ({purpose})"
        ) from None
    if value < 0:
        raise SettingsError(f"environment variable {name}={raw!r} must not be negative ({purpose})")
    return value


def _identifier(env: Mapping[str, str], name: str, purpose: str, default: str | None = None) -> str:
    value = _get(env, name, purpose, default)
    if not IDENTIFIER.match(value):
        raise SettingsError(f"environment variable {name}={value!r} is not a SQL identifier ({purpose})")
    return value


@dataclass(frozen=True)
class WarehouseSettings:
    """Where statements go: a Redshift Serverless workgroup or a provisioned cluster."""

    database: str
    workgroup: str | None = None
    cluster_id: str | None = None
    secret_arn: str | None = None
    db_user: str | None = None
    statement_timeout_s: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WarehouseSettings:
        env = os.environ if env is None else env
        workgroup = env.get("REDSHIFT_WORKGROUP", "").strip() or None
        cluster_id = env.get("REDSHIFT_CLUSTER_ID", "").strip() or None
        if not workgroup and not cluster_id:
            raise SettingsError(
                "missing environment variable REDSHIFT_WORKGROUP (Redshift Serverless workgroup) "
                "or REDSHIFT_CLUSTER_ID (provisioned cluster)"
            )
        if workgroup and cluster_id:
            raise SettingsError("set only one of REDSHIFT_WORKGROUP and REDSHIFT_CLUSTER_ID")
        return cls(
            database=_get(env, "REDSHIFT_DATABASE", "database name", "dev"),
            workgroup=workgroup,
            cluster_id=cluster_id,
            secret_arn=env.get("REDSHIFT_SECRET_ARN", "").strip() or None,
            db_user=env.get("REDSHIFT_DB_USER", "").strip() or None,
            statement_timeout_s=_number(
                env, "STATEMENT_TIMEOUT_SECONDS", "longest wait for one SQL statement", "300"
            ),
        )


@dataclass(frozen=True)
class SqlSettings:
    """Values for the `${NAME}` placeholders of sql/ (see sql/README.md)."""

    tx_stream: str
    label_stream: str
    iam_role: str
    s3_bucket: str
    model_name: str
    model_function: str
    max_runtime: int
    max_cells: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SqlSettings:
        env = os.environ if env is None else env
        return cls(
            tx_stream=_get(env, "TX_STREAM", "Kinesis stream of transactions"),
            label_stream=_get(env, "LABEL_STREAM", "Kinesis stream of labels"),
            iam_role=_get(env, "REDSHIFT_IAM_ROLE", "role Redshift assumes, or 'default'", "default"),
            s3_bucket=_get(env, "S3_BUCKET", "bucket for history and Redshift ML"),
            model_name=_identifier(env, "MODEL_NAME", "base name of the model", "fraud_model"),
            model_function=_identifier(env, "MODEL_FUNCTION", "base name of its function", "fn_fraud_score"),
            max_runtime=int(_number(env, "MODEL_MAX_RUNTIME", "CREATE MODEL MAX_RUNTIME, s", "5400", int)),
            max_cells=int(_number(env, "MODEL_MAX_CELLS", "CREATE MODEL MAX_CELLS", "40000000", int)),
        )

    def placeholders(self) -> dict[str, str]:
        return {
            "TX_STREAM": self.tx_stream,
            "LABEL_STREAM": self.label_stream,
            "IAM_ROLE": self.iam_role,
            "S3_BUCKET": self.s3_bucket,
            "MODEL_NAME": self.model_name,
            "MODEL_FUNCTION": self.model_function,
            "MAX_RUNTIME": str(self.max_runtime),
            "MAX_CELLS": str(self.max_cells),
        }


@dataclass(frozen=True)
class AlertSettings:
    topic_arn: str
    threshold: float
    poll_interval_s: float
    batch_limit: int
    stop_margin_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        threshold = _number(env, "ALERT_THRESHOLD", "score above which a transaction alerts", "0.5")
        if threshold > 1:
            raise SettingsError(f"environment variable ALERT_THRESHOLD={threshold} must be in [0, 1]")
        return cls(
            topic_arn=_get(env, "ALERT_TOPIC_ARN", "SNS topic for alerts"),
            threshold=threshold,
            poll_interval_s=_number(env, "POLL_INTERVAL_SECONDS", "pause between scoring cycles", "5"),
            batch_limit=int(_number(env, "ALERT_BATCH_LIMIT", "pending alerts read per cycle", "500", int)),
            stop_margin_s=_number(env, "STOP_MARGIN_SECONDS", "time kept free before the timeout", "15"),
        )


@dataclass(frozen=True)
class ActionSettings:
    cases_table: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ActionSettings:
        env = os.environ if env is None else env
        return cls(
            cases_table=_get(env, "CASES_TABLE", "DynamoDB table of cases and card locks"),
        )
