"""train_model: on its schedule, settle versions in training and promote; start one on `start`."""

from dataclasses import asdict
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fraud_common import training
from fraud_common.dataapi import DataApi
from fraud_common.settings import SqlSettings, WarehouseSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _dependencies() -> tuple[DataApi, SqlSettings]:
    return DataApi(WarehouseSettings.from_env()), SqlSettings.from_env()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    api, sql = _dependencies()
    outcome = training.tick(api, sql, action=(event or {}).get("action", "check"))
    metrics.add_metric(name="ModelsPromoted", unit=MetricUnit.Count, value=len(outcome.promoted))
    return asdict(outcome)
