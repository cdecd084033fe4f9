"""score_and_alert: every minute (EventBridge Scheduler), cycle on the poll interval until near timeout."""

from dataclasses import asdict
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fraud_common import alerts
from fraud_common.dataapi import DataApi
from fraud_common.settings import AlertSettings, SqlSettings, WarehouseSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _dependencies() -> tuple[DataApi, AlertSettings, SqlSettings]:
    return DataApi(WarehouseSettings.from_env()), AlertSettings.from_env(), SqlSettings.from_env()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    api, alert_settings, sql = _dependencies()
    result = alerts.run(api, alert_settings, sql, context.get_remaining_time_in_millis)
    for name, value in (
        ("TransactionsScored", result.totals.scored),
        ("AlertsEnqueued", result.totals.enqueued),
        ("AlertsPublished", result.totals.published),
        ("AlertPublishFailures", result.totals.failed),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return asdict(result)
