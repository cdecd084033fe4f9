"""Data in transit and exposure: TLS-only resource policies, no public warehouse, encrypted producer disk.

(Encryption at rest of every stream, bucket, topic, queue and table is checked in test_template.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
POLICY_KINDS = {
    "AWS::S3::BucketPolicy": ("Bucket", "AWS::S3::Bucket"),
    "AWS::SQS::QueuePolicy": ("Queues", "AWS::SQS::Queue"),
    "AWS::SNS::TopicPolicy": ("Topics", "AWS::SNS::Topic"),
}


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    from local.template import TEMPLATE, load_template

    return load_template(TEMPLATE, region="us-east-1").resources


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _target(value: Any) -> str:
    """The logical id a policy's Bucket/Queues/Topics entry refers to (Ref or GetAtt)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
    return str(value)


def tls_only_targets(resources: dict[str, dict[str, Any]]) -> set[str]:
    """Resources with a policy that denies every request not made over TLS."""
    covered = set()
    for resource in resources.values():
        if resource["Type"] not in POLICY_KINDS:
            continue
        key, _kind = POLICY_KINDS[resource["Type"]]
        properties = resource["Properties"]
        denies_plain = any(
            s.get("Effect") == "Deny"
            and s.get("Principal") in ("*", {"AWS": "*"})
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in _list(properties["PolicyDocument"]["Statement"])
        )
        if denies_plain:
            covered |= {_target(t) for t in _list(properties[key])}
    return covered


def _of_kind(resources: dict[str, dict[str, Any]], kind: str) -> set[str]:
    return {name for name, r in resources.items() if r["Type"] == kind}


def test_bucket_and_alert_queue_refuse_plain_http(resources) -> None:
    covered = tls_only_targets(resources)
    assert _of_kind(resources, "AWS::S3::Bucket") <= covered
    assert "AlertActionsQueue" in covered


def test_every_topic_and_queue_refuses_plain_http(resources) -> None:
    covered = tls_only_targets(resources)
    missing = (_of_kind(resources, "AWS::SNS::Topic") | _of_kind(resources, "AWS::SQS::Queue")) - covered
    assert missing == set()


def test_each_topic_and_queue_has_exactly_one_policy(resources) -> None:
    """A second policy on the same queue or topic silently replaces the first (the last one applied wins)."""
    targets: list[str] = []
    for resource in resources.values():
        if resource["Type"] in ("AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            key, _kind = POLICY_KINDS[resource["Type"]]
            targets += [_target(t) for t in _list(resource["Properties"][key])]
    assert sorted(targets) == sorted(
        _of_kind(resources, "AWS::SNS::Topic") | _of_kind(resources, "AWS::SQS::Queue")
    )


def _policy_of(resources: dict[str, dict[str, Any]], kind: str, target: str) -> list[dict[str, Any]]:
    key, _kind = POLICY_KINDS[kind]
    return next(
        _list(r["Properties"]["PolicyDocument"]["Statement"])
        for r in resources.values()
        if r["Type"] == kind and target in {_target(t) for t in _list(r["Properties"][key])}
    )


def _allows(statements: list[dict[str, Any]], principal: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [
        s
        for s in statements
        if s["Effect"] == "Allow" and s["Principal"] == principal and action in _list(s["Action"])
    ]


def test_topic_and_queue_policies_keep_publishers_and_owner_working(resources) -> None:
    """A topic policy replaces SNS's default one: alarms, the owner and the SNS->SQS delivery must survive."""
    alarm_topics = {
        _target(t)
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        for t in r["Properties"].get("AlarmActions", [])
    }
    assert alarm_topics == {"OpsTopic"}
    (alarms,) = _allows(
        _policy_of(resources, "AWS::SNS::TopicPolicy", "OpsTopic"),
        {"Service": "cloudwatch.amazonaws.com"},
        "sns:Publish",
    )
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert alarms["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].endswith(":alarm:${AWS::StackName}-*")

    owner = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    for topic in _of_kind(resources, "AWS::SNS::Topic"):
        statements = _policy_of(resources, "AWS::SNS::TopicPolicy", topic)
        for action in ("sns:Publish", "sns:Subscribe", "sns:SetTopicAttributes", "sns:DeleteTopic"):
            assert _allows(statements, owner, action), (topic, action)
        # the topics are KMS-encrypted: whoever publishes needs the key too (CloudWatch via the key policy)
        assert resources[topic]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertsKey"}
    key_policy = resources["AlertsKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        "cloudwatch.amazonaws.com" in _list(s["Principal"].get("Service", []))
        and {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(_list(s["Action"]))
        and s["Effect"] == "Allow"
        for s in key_policy
    )

    (delivery,) = _allows(
        _policy_of(resources, "AWS::SQS::QueuePolicy", "AlertActionsQueue"),
        {"Service": "sns.amazonaws.com"},
        "sqs:SendMessage",
    )
    assert delivery["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "AlertTopic"}}}


def test_warehouse_is_not_public_and_producer_disk_is_encrypted(resources) -> None:
    workgroups = [r for r in resources.values() if r["Type"] == "AWS::RedshiftServerless::Workgroup"]
    assert workgroups and all(w["Properties"].get("PubliclyAccessible") is False for w in workgroups)
    for instance in (r for r in resources.values() if r["Type"] == "AWS::EC2::Instance"):
        for mapping in instance["Properties"].get("BlockDeviceMappings", []):
            assert mapping["Ebs"]["Encrypted"] is True
