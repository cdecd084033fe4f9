"""template.yaml: cfn-lint, the SAM translator (offline), and what the translated template must hold."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
# AWS managed policies SAM attaches; their wildcards are AWS's documented minimum for what they do.
ALLOWED_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
# Actions whose APIs accept no resource ARN, so "*" is the only possible resource.
STAR_RESOURCE_OK = {
    "kinesis:ListStreams",
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
}


class ManagedPolicies:
    def load(self) -> dict[str, str]:
        return {a.rsplit("/", 1)[1]: a for a in ALLOWED_MANAGED}


def load_template() -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return json.loads(json.dumps(template))


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    """The template as CloudFormation receives it after `sam package` (code URIs become S3 URIs)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = load_template()
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://artifacts/{logical_id}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    return translator.translate(template, parameter_values={}, get_managed_policy_map=ManagedPolicies().load)


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every identity-policy statement: inline role policies and customer managed policies."""
    found = []
    for name, role in of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found += [(name, s) for s in _list(policy["PolicyDocument"]["Statement"])]
    for name, policy in of_type(template, "AWS::IAM::ManagedPolicy").items():
        found += [(name, s) for s in _list(policy["Properties"]["PolicyDocument"]["Statement"])]
    return found


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_is_clean() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_every_function_has_its_own_role(translated) -> None:
    functions = of_type(translated, "AWS::Lambda::Function")
    assert len(functions) == 4
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(set(roles)) == 4
    for role in roles:
        managed = translated["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
        for arn in managed:
            assert arn == {"Ref": "WarehouseAccessPolicy"} or arn in ALLOWED_MANAGED, (role, arn)


def test_no_wildcard_actions_and_star_resources_only_where_required(translated) -> None:
    checked = 0
    for owner, statement in statements(translated):
        if statement.get("Effect") != "Allow":
            continue
        checked += 1
        actions = _list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{owner}: wildcard action {action}"
        if "*" in _list(statement.get("Resource", [])):
            assert set(actions) <= STAR_RESOURCE_OK, f"{owner}: '*' resource for {actions}"
    assert checked > 10


def test_statement_apis_are_limited_to_own_statements(translated) -> None:
    policy = translated["Resources"]["WarehouseAccessPolicy"]["Properties"]["PolicyDocument"]
    star = next(s for s in policy["Statement"] if s.get("Resource") == "*")
    assert star["Condition"] == {
        "StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
    }


def test_producer_may_only_put_records_on_the_two_streams(translated) -> None:
    role = translated["Resources"]["ProducerRole"]
    assert role["Condition"] == "CreateProducer"
    allowed = [s for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]]
    kinesis = next(s for s in allowed if s["Sid"] == "WriteTheTwoStreams")
    assert set(kinesis["Action"]) == {"kinesis:PutRecords", "kinesis:DescribeStreamSummary"}
    assert kinesis["Resource"] == [
        {"Fn::GetAtt": ["TransactionStream", "Arn"]},
        {"Fn::GetAtt": ["LabelStream", "Arn"]},
    ]
    wheel = next(s for s in allowed if s["Sid"] == "FetchTheProducerWheel")
    assert wheel["Action"] == "s3:GetObject"


def test_encryption_everywhere(translated) -> None:
    resources = translated["Resources"]
    for stream in of_type(translated, "AWS::Kinesis::Stream").values():
        assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    for topic in of_type(translated, "AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertsKey"}
    for queue in of_type(translated, "AWS::SQS::Queue").values():
        assert queue["Properties"].get("SqsManagedSseEnabled") or queue["Properties"].get("KmsMasterKeyId")
    for table in of_type(translated, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    bucket = resources["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    tls = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert resources["Namespace"]["Properties"]["AdminUserPassword"]["Fn::Sub"].startswith(
        "{{resolve:secretsmanager:"
    )
    assert "MasterUserPassword" not in json.dumps(resources["Namespace"])


def test_scoring_schedule_concurrency_and_failure_destinations(translated) -> None:
    resources = translated["Resources"]
    score = resources["ScoreAndAlertFunction"]["Properties"]
    assert score["ReservedConcurrentExecutions"] == 1
    schedule = resources["ScoreAndAlertFunctionEveryMinute"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "ScoringSchedule"}
    assert translated["Parameters"]["ScoringSchedule"]["Default"] == "rate(1 minute)"
    # The loop stops STOP_MARGIN_SECONDS before the timeout, leaving room for one statement to finish.
    env = score["Environment"]["Variables"]
    assert int(env["STOP_MARGIN_SECONDS"]) < score["Timeout"] <= 60
    for function in ("ScoreAndAlertFunction", "TrainModelFunction"):
        config = resources[f"{function}EventInvokeConfig"]["Properties"]
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["AsyncFailureQueue", "Arn"]
        }
    for schedule in of_type(translated, "AWS::Scheduler::Schedule").values():
        assert schedule["Properties"]["Target"]["DeadLetterConfig"]["Arn"] == {
            "Fn::GetAtt": ["AsyncFailureQueue", "Arn"]
        }
    queue = resources["AlertActionsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["AlertActionsDLQ", "Arn"]}
    mapping = next(iter(of_type(translated, "AWS::Lambda::EventSourceMapping").values()))["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_alarms_cover_dlq_errors_stall_and_lag(translated) -> None:
    alarms = {a["Properties"]["MetricName"] for a in of_type(translated, "AWS::CloudWatch::Alarm").values()}
    assert {
        "ApproximateNumberOfMessagesVisible",
        "Errors",
        "Invocations",
        "GetRecords.IteratorAgeMilliseconds",
    } <= alarms


def test_named_resources_have_deterministic_names_and_outputs(translated) -> None:
    """The local stack reads these names from the template: none may be left to CloudFormation."""
    name_property = {
        "AWS::Kinesis::Stream": "Name",
        "AWS::S3::Bucket": "BucketName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::DynamoDB::Table": "TableName",
    }
    outputs = json.dumps(translated["Outputs"])
    for kind, prop in name_property.items():
        for logical_id, resource in of_type(translated, kind).items():
            assert prop in resource["Properties"], f"{logical_id} has no explicit {prop}"
            assert f'"{logical_id}"' in outputs, f"{logical_id} is not in Outputs"
    for needed in (
        "TransactionStreamName",
        "DataBucketName",
        "AlertTopicArn",
        "AlertActionsQueueUrl",
        "CasesTableName",
    ):
        assert needed in translated["Outputs"]


def render_user_data(template: dict[str, Any]) -> str:
    """The producer's user data with Fn::Sub applied as CloudFormation would."""
    sub = template["Resources"]["ProducerInstance"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    values = {
        "DataBucket": "card-fraud-data-123456789012-us-east-1",
        "ProducerWheelKey": "artifacts/card_fraud_pipeline-0.1.0-py3-none-any.whl",
        "AWS::Region": "us-east-1",
        "TransactionStreamName": "cust-payment-txn-stream",
        "LabelStreamName": "cust-payment-label-stream",
        "ProducerRate": "100",
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else values[name]

    return re.sub(r"\$\{([^}]+)\}", replace, sub)


def stub_commands(bin_dir: Path, log: Path, wheel_appears_after: int) -> None:
    """dnf, aws, systemctl, python3.11 and sleep that record their calls instead of touching the host."""
    scripts = {
        "dnf": 'echo "dnf $*" >> "$LOG"',
        "systemctl": 'echo "systemctl $*" >> "$LOG"',
        "sleep": 'echo "sleep $*" >> "$LOG"',
        "aws": (
            'echo "aws $*" >> "$LOG"\n'
            'n=$(grep -c "^aws " "$LOG")\n'
            f'if [ "$n" -lt {wheel_appears_after} ]; then exit 1; fi\n'
            'touch "${@: -1}/$(basename "$4")"'
        ),
        "python3.11": (
            'echo "python3.11 $*" >> "$LOG"\n'
            'mkdir -p "$3/bin"\n'
            'printf \'#!/bin/bash\\necho "pip $*" >> "$LOG"\\n\' > "$3/bin/pip"\n'
            'chmod +x "$3/bin/pip"'
        ),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("wheel_appears_after", [1, 3])
def test_producer_user_data_installs_the_wheel_and_starts_the_service(tmp_path, wheel_appears_after) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(render_user_data(load_template()))
    bin_dir, root, log = tmp_path / "bin", tmp_path / "root", tmp_path / "calls.log"
    bin_dir.mkdir()
    root.mkdir()
    stub_commands(bin_dir, log, wheel_appears_after)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PRODUCER_ROOT": str(root),
        "LOG": str(log),
    }
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls.count("sleep 30") == wheel_appears_after - 1  # waited for the wheel upload
    assert any(
        c.startswith("pip install") and c.endswith("card_fraud_pipeline-0.1.0-py3-none-any.whl")
        for c in calls
    )
    assert calls[-2:] == ["systemctl daemon-reload", "systemctl enable --now fraud-producer.service"]
    unit = (root / "etc/systemd/system/fraud-producer.service").read_text()
    assert (
        "ExecStart=/opt/producer/venv/bin/python -m producer stream --stream cust-payment-txn-stream "
        "--label-stream cust-payment-label-stream --rate 100" in unit
    )
    assert "Environment=AWS_REGION=us-east-1" in unit and "Restart=always" in unit
    assert base64.b64encode(script.read_bytes())  # renders to valid user data


def test_producer_user_data_fails_when_the_wheel_never_arrives(tmp_path) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(render_user_data(load_template()))
    bin_dir, root, log = tmp_path / "bin", tmp_path / "root", tmp_path / "calls.log"
    bin_dir.mkdir()
    root.mkdir()
    stub_commands(bin_dir, log, wheel_appears_after=10_000)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PRODUCER_ROOT": str(root),
        "LOG": str(log),
    }
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "never appeared" in result.stderr
    assert "systemctl" not in log.read_text()
