"""apply_sql: CloudFormation custom resource (and direct invoke) applying sql/migrations."""

from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fraud_common import sql_resource
from fraud_common.dataapi import DataApi
from fraud_common.settings import SqlSettings, WarehouseSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _dependencies() -> tuple[DataApi, dict[str, str]]:
    # Settings are validated once per cold start; a missing variable names itself in the error.
    return DataApi(WarehouseSettings.from_env()), SqlSettings.from_env().placeholders()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    api, placeholders = _dependencies()
    result = sql_resource.handle(event, api, placeholders)
    applied = result.get("Data", result).get("Applied", 0)  # custom resource response, or direct result
    metrics.add_metric(name="MigrationsApplied", unit=MetricUnit.Count, value=applied)
    return result
