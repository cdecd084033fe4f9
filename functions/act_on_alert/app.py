"""act_on_alert: SQS batch of alerts -> case + card lock in DynamoDB, idempotent per transaction id."""

from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fraud_common import actions
from fraud_common.settings import ActionSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _handler():
    return actions.make_handler(ActionSettings.from_env())


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    response = _handler()(event, context)
    failed = len(response.get("batchItemFailures", []))
    metrics.add_metric(
        name="AlertsActedOn", unit=MetricUnit.Count, value=len(event.get("Records", [])) - failed
    )
    metrics.add_metric(name="AlertActionFailures", unit=MetricUnit.Count, value=failed)
    return response
