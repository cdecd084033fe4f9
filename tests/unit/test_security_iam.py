"""IAM over the translated template: who may do what, on which resources, and who may read the secret.

The template is translated offline with the SAM translator (as `sam deploy` would), so the roles SAM
generates (functions, schedules) are checked too, not only the ones written by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MANAGED = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
# AWS managed policies a role may carry: AWS's own minimum for logs, traces, the SQS event source and
# Systems Manager (the producer instance is reached with Session Manager, never SSH).
ALLOWED_MANAGED = set(MANAGED.values()) | {
    "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
# The documented wildcard exceptions: a resource text with "*" is allowed only when it matches one of these,
# each the narrowest resource the API accepts.
WILDCARD_EXCEPTIONS = {
    "*": "APIs that take no resource ARN: kinesis:ListStreams; the Data API's statement APIs "
    "(limited to the caller's own statements by a condition)",
    "${DataBucket.Arn}/*": "objects of the stack's own bucket (Redshift COPY and Redshift ML)",
    "arn:${AWS::Partition}:redshift-serverless:${AWS::Region}:${AWS::AccountId}:workgroup/*": "an existing "
    "workgroup is known by name, its ARN holds an id the template cannot know",
    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/*": "the "
    "SageMaker jobs Redshift ML starts log under their own generated names",
}
# Redshift ML names its SageMaker jobs and models itself, always with the "redshift" prefix.
SAGEMAKER_PREFIXED = re.compile(r":(training-job|automl-job|compilation-job|model)/redshift\*$")
STAR_RESOURCE_ACTIONS = {
    "kinesis:ListStreams",
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
}
FUNCTION_ROLES_WITH_WAREHOUSE = {
    "ApplySqlFunctionRole",
    "TrainModelFunctionRole",
    "ScoreAndAlertFunctionRole",
}


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    import boto3
    from cfnlint.decode import decode
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template, matches = decode(str(REPO / "template.yaml"))
    assert not matches, matches
    template = json.loads(json.dumps(template))
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artifacts/{logical_id}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    return translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: MANAGED)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def role_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role, statement) for every identity statement a role gets: inline and customer managed."""
    managed = {
        name: _list(p["Properties"]["PolicyDocument"]["Statement"])
        for name, p in _of_type(template, "AWS::IAM::ManagedPolicy").items()
    }
    for name, role in _of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in _list(policy["PolicyDocument"]["Statement"]):
                yield name, statement
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                for statement in managed[arn["Ref"]]:
                    yield name, statement


def resource_strings(resource: Any) -> list[str]:
    """Every literal or Fn::Sub text inside a resource expression (where a wildcard could hide)."""
    if isinstance(resource, str):
        return [resource]
    if isinstance(resource, list):
        return [s for item in resource for s in resource_strings(item)]
    if isinstance(resource, dict):
        if "Fn::Sub" in resource:
            sub = resource["Fn::Sub"]
            return [sub if isinstance(sub, str) else sub[0]]
        return [s for value in resource.values() for s in resource_strings(value)]
    return []


def access_table(template: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    table: dict[str, list[tuple[str, str]]] = {}
    for role, statement in role_statements(template):
        if statement.get("Effect") != "Allow":
            continue
        resources = json.dumps(statement.get("Resource"), sort_keys=True)
        for action in _list(statement["Action"]):
            table.setdefault(role, []).append((action, resources))
    return table


def test_print_every_roles_actions_and_resources(translated) -> None:
    table = access_table(translated)
    for role, rows in sorted(table.items()):
        print(f"\n{role}")
        for action, resources in rows:
            print(f"  {action:45s} {resources[:150]}")
    assert set(table) >= FUNCTION_ROLES_WITH_WAREHOUSE | {"ActOnAlertFunctionRole", "ProducerRole"}


def test_no_wildcards_beyond_the_documented_exceptions(translated) -> None:
    offences = []
    for role, statement in role_statements(translated):
        assert "NotAction" not in statement and "NotResource" not in statement, (role, statement)
        if statement.get("Effect") != "Allow":
            continue
        actions = _list(statement["Action"])
        offences += [f"{role}: wildcard action {a}" for a in actions if "*" in a]
        for text in resource_strings(statement.get("Resource")):
            if "*" not in text or SAGEMAKER_PREFIXED.search(text):
                continue
            if text not in WILDCARD_EXCEPTIONS:
                offences.append(f"{role}: {actions} on {text}")
            elif text == "*" and not set(actions) <= STAR_RESOURCE_ACTIONS:
                offences.append(f"{role}: {actions} on every resource")
    assert offences == []


def test_only_aws_minimum_managed_policies(translated) -> None:
    for name, role in _of_type(translated, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                continue  # the template's own policies, checked statement by statement above
            text = arn if isinstance(arn, str) else arn.get("Fn::Sub")
            assert text in ALLOWED_MANAGED, (name, arn)


def test_the_producer_can_only_put_records(translated) -> None:
    actions = {a for a, _ in access_table(translated)["ProducerRole"]}
    # DescribeStreamSummary: the producer checks the stream exists; GetObject: its own wheel, one key.
    assert actions == {"kinesis:PutRecords", "kinesis:DescribeStreamSummary", "s3:GetObject"}
    wheel = [r for a, r in access_table(translated)["ProducerRole"] if a == "s3:GetObject"]
    assert wheel == [json.dumps({"Fn::Sub": "${DataBucket.Arn}/${ProducerWheelKey}"})]


def test_only_the_warehouse_functions_can_read_the_admin_secret(translated) -> None:
    readers = {
        role
        for role, statement in role_statements(translated)
        if statement.get("Effect") == "Allow"
        and any(a.startswith("secretsmanager:") for a in _list(statement["Action"]))
    }
    assert readers == FUNCTION_ROLES_WITH_WAREHOUSE
    # act_on_alert (DynamoDB only) never talks to the warehouse.
    actions = {a for a, _ in access_table(translated)["ActOnAlertFunctionRole"]}
    assert not any(a.startswith(("redshift", "secretsmanager", "sns:", "kinesis")) for a in actions)


def test_every_role_trusts_one_service(translated) -> None:
    expected = {"lambda.amazonaws.com", "scheduler.amazonaws.com", "ec2.amazonaws.com"}
    for name, role in _of_type(translated, "AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            principals = set(_list(statement["Principal"].get("Service", [])))
            assert "AWS" not in statement["Principal"], f"{name} trusts an account or user"
            if name == "RedshiftRole":
                assert principals == {"redshift.amazonaws.com", "sagemaker.amazonaws.com"}
            else:
                assert len(principals) == 1 and principals <= expected, (name, principals)
