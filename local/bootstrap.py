"""Create on the local stack the resources template.yaml declares, with the same names.

Streams, buckets, topics, queues (with redrive), subscriptions (with filter policies) and DynamoDB
tables are created through boto3 against the moto server; what the Lambda functions need to run
in-process (code location, handler, resolved environment, timeout, schedules, SQS event sources)
is read from the same template into `FunctionSpec`s.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from local.template import REPO, Template, TemplateError

log = logging.getLogger(__name__)

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")


class BootstrapError(Exception):
    """A resource of the template could not be created locally."""


@dataclass(frozen=True)
class Schedule:
    period_s: float
    event: dict[str, Any] | None  # the schedule's Input, when the template sets one


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    handler: str  # "module.function", as in the template
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]
    schedules: list[Schedule] = field(default_factory=list)
    queue_arn: str | None = None  # SQS event source
    batch_size: int = 10
    report_batch_item_failures: bool = False
    # Lambda polls an SQS queue with several concurrent batches; locally one at a time, because moto's
    # DynamoDB is not thread-safe (concurrent TransactWriteItems fail with HTTP 500 inside moto).
    queue_concurrency: int = 1

    @property
    def dir_name(self) -> str:
        return self.code_dir.name


@dataclass
class Resources:
    """What bootstrap created, by logical id."""

    streams: dict[str, str] = field(default_factory=dict)  # logical id -> stream name
    buckets: dict[str, str] = field(default_factory=dict)  # -> bucket name
    topics: dict[str, str] = field(default_factory=dict)  # -> topic ARN
    queues: dict[str, str] = field(default_factory=dict)  # -> queue URL
    tables: dict[str, str] = field(default_factory=dict)  # -> table name
    subscriptions: list[str] = field(default_factory=list)  # subscription ARNs
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    def queue_url_for_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        for url in self.queues.values():
            if url.rsplit("/", 1)[-1] == name:
                return url
        raise BootstrapError(f"no local queue for {arn}")


def parse_rate(expression: str) -> float:
    """EventBridge `rate(N unit)` in seconds; `cron(...)` runs at its finest granularity, 1 minute."""
    match = re.fullmatch(r"\s*rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)\s*", expression)
    if match:
        unit = match.group(2).rstrip("s")
        return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[unit]
    if expression.strip().startswith(("cron(", "at(")):
        return 60.0
    raise TemplateError(f"template.yaml: unsupported schedule expression {expression!r}")


def create_resources(template: Template) -> Resources:
    """Create every stream, bucket, queue, topic, subscription and table; idempotent."""
    out = Resources()
    try:
        _create_queues(template, out)
        _create_topics(template, out)
        _create_streams(template, out)
        _create_buckets(template, out)
        _create_tables(template, out)
    except ClientError as exc:
        raise BootstrapError(f"creating the template's resources failed: {exc}") from exc
    out.functions = function_specs(template)
    return out


def _create_queues(template: Template, out: Resources) -> None:
    sqs = boto3.client("sqs")
    allowed = {
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "FifoQueue",
        "ContentBasedDeduplication",
    }
    queues = template.of_type("AWS::SQS::Queue")
    # dead-letter queues first: a redrive policy names an existing queue
    ordered = sorted(queues, key=lambda q: "RedrivePolicy" in (queues[q].get("Properties") or {}))
    for logical_id in ordered:
        props = template.properties(logical_id)
        attributes = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in props.items() if k in allowed
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        name = template.physical_name(logical_id)
        out.queues[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]


def _create_topics(template: Template, out: Resources) -> None:
    sns = boto3.client("sns")
    for logical_id in template.of_type("AWS::SNS::Topic"):
        props = template.properties(logical_id)
        attributes = {"FifoTopic": "true"} if props.get("FifoTopic") else {}
        arn = sns.create_topic(Name=template.physical_name(logical_id), Attributes=attributes)["TopicArn"]
        out.topics[logical_id] = arn
        for sub in props.get("Subscription") or []:
            _subscribe(sns, arn, sub["Protocol"], sub["Endpoint"], {}, out)
    for logical_id in template.of_type("AWS::SNS::Subscription"):
        props = template.properties(logical_id)
        attributes = {}
        for key in ("FilterPolicy", "RedrivePolicy"):
            if key in props:
                attributes[key] = json.dumps(props[key]) if not isinstance(props[key], str) else props[key]
        if "FilterPolicyScope" in props:
            attributes["FilterPolicyScope"] = props["FilterPolicyScope"]
        if "RawMessageDelivery" in props:
            attributes["RawMessageDelivery"] = str(props["RawMessageDelivery"]).lower()
        _subscribe(sns, props["TopicArn"], props["Protocol"], props["Endpoint"], attributes, out)


def _subscribe(
    sns: Any, topic_arn: str, protocol: str, endpoint: str, attributes: dict, out: Resources
) -> None:
    if not endpoint:
        return  # an optional e-mail left empty
    response = sns.subscribe(
        TopicArn=topic_arn,
        Protocol=protocol,
        Endpoint=endpoint,
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )
    out.subscriptions.append(response["SubscriptionArn"])


def _create_streams(template: Template, out: Resources) -> None:
    kinesis = boto3.client("kinesis")
    for logical_id in template.of_type("AWS::Kinesis::Stream"):
        props = template.properties(logical_id)
        name = template.physical_name(logical_id)
        mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        kwargs: dict[str, Any] = {"StreamName": name, "StreamModeDetails": {"StreamMode": mode}}
        if mode == "PROVISIONED":
            kwargs["ShardCount"] = int(props.get("ShardCount", 1))
        try:
            kinesis.create_stream(**kwargs)
        except kinesis.exceptions.ResourceInUseException:
            pass
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
        )
        out.streams[logical_id] = name


def _create_buckets(template: Template, out: Resources) -> None:
    s3 = boto3.client("s3")
    for logical_id in template.of_type("AWS::S3::Bucket"):
        name = template.physical_name(logical_id)
        try:
            s3.create_bucket(Bucket=name)
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass
        out.buckets[logical_id] = name


def _create_tables(template: Template, out: Resources) -> None:
    ddb = boto3.client("dynamodb")
    for logical_id, resource in template.of_type(*TABLE_TYPES).items():
        props = template.properties(logical_id)
        name = template.physical_name(logical_id)
        if resource["Type"] == "AWS::Serverless::SimpleTable":
            key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
            kind = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
            kwargs = {
                "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
            }
        else:
            kwargs = {
                k: props[k]
                for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
                if k in props
            }
        try:
            ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **kwargs)
        except ddb.exceptions.ResourceInUseException:
            pass
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        out.tables[logical_id] = name


def function_specs(template: Template) -> dict[str, FunctionSpec]:
    """Every function with its resolved environment, schedules and SQS event source."""
    glob = template.resolve(((template.body.get("Globals") or {}).get("Function")) or {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id in template.of_type(*FUNCTION_TYPES):
        props = template.properties(logical_id)
        env = dict((glob.get("Environment") or {}).get("Variables") or {})
        env.update((props.get("Environment") or {}).get("Variables") or {})
        code = props.get("CodeUri") or props.get("Code") or "."
        if not isinstance(code, str):
            raise TemplateError(
                f"template.yaml: {logical_id} has inline or S3 code; the local stack needs a CodeUri"
            )
        spec = FunctionSpec(
            logical_id=logical_id,
            name=template.physical_name(logical_id),
            code_dir=(REPO / code).resolve(),
            handler=props.get("Handler") or glob.get("Handler") or "app.lambda_handler",
            timeout_s=float(props.get("Timeout") or glob.get("Timeout") or 3),
            memory_mb=int(props.get("MemorySize") or glob.get("MemorySize") or 128),
            environment={k: _env_text(v) for k, v in env.items()},
        )
        for event in (props.get("Events") or {}).values():
            _add_event_source(spec, event.get("Type", ""), event.get("Properties") or {})
        specs[logical_id] = spec
    _add_standalone_sources(template, specs)
    return specs


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, dict | list)
        else str(value)
    )


def _add_event_source(spec: FunctionSpec, kind: str, props: dict[str, Any]) -> None:
    if kind in ("Schedule", "ScheduleV2"):
        if props.get("Enabled") is False or props.get("State") == "DISABLED":
            return
        expression = props.get("Schedule") or props.get("ScheduleExpression")
        spec.schedules.append(Schedule(parse_rate(expression), _input(props.get("Input"))))
    elif kind == "SQS":
        if props.get("Enabled") is False:
            return
        spec.queue_arn = props["Queue"]
        spec.batch_size = int(props.get("BatchSize", 10))
        spec.report_batch_item_failures = "ReportBatchItemFailures" in (
            props.get("FunctionResponseTypes") or []
        )


def _input(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def _add_standalone_sources(template: Template, specs: dict[str, FunctionSpec]) -> None:
    """Schedules and event source mappings declared as their own resources."""
    by_arn = {template.arn("lambda", s.name): s for s in specs.values()}

    def target(arn: str) -> FunctionSpec | None:
        return next((s for a, s in by_arn.items() if arn == a or arn.startswith(a + ":")), None)

    for logical_id in template.of_type("AWS::Scheduler::Schedule"):
        props = template.properties(logical_id)
        spec = target(props.get("Target", {}).get("Arn", ""))
        if spec and props.get("State", "ENABLED") == "ENABLED":
            spec.schedules.append(
                Schedule(parse_rate(props["ScheduleExpression"]), _input(props["Target"].get("Input")))
            )
    for logical_id in template.of_type("AWS::Events::Rule"):
        props = template.properties(logical_id)
        if "ScheduleExpression" not in props or props.get("State", "ENABLED") != "ENABLED":
            continue
        for tgt in props.get("Targets") or []:
            spec = target(tgt.get("Arn", ""))
            if spec:
                spec.schedules.append(
                    Schedule(parse_rate(props["ScheduleExpression"]), _input(tgt.get("Input")))
                )
    for logical_id in template.of_type("AWS::Lambda::EventSourceMapping"):
        props = template.properties(logical_id)
        name = str(props.get("FunctionName", ""))
        spec = next((s for s in specs.values() if name in (s.name, template.arn("lambda", s.name))), None)
        if spec and ":sqs:" in str(props.get("EventSourceArn", "")):
            _add_event_source(spec, "SQS", {**props, "Queue": props["EventSourceArn"]})


def custom_resources(template: Template) -> list[tuple[str, str, dict[str, Any]]]:
    """(logical id, service-token function name, resolved properties) of each custom resource."""
    found = []
    for logical_id, resource in template.resources.items():
        kind = resource.get("Type", "")
        if kind == "AWS::CloudFormation::CustomResource" or kind.startswith("Custom::"):
            props = template.properties(logical_id)
            token = str(props.pop("ServiceToken", ""))
            found.append((logical_id, token.rsplit(":", 1)[-1], props))
    return found
