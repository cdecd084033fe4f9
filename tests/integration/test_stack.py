"""The local stack: template-driven resources, the scheduler's event sources, and its error paths.

The bootstrap test reads the real template.yaml; the scheduler tests use a small template of their
own whose handlers record what they receive, to check the AWS semantics the scheduler stands in for
(SQS batches, partial batch failures and the DLQ redrive, filter policies, schedules, clean stop).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest

from local.stack import GC_THRESHOLDS, LOCK_FILE, MOTO_SERVICES, Stack, StackError, StackOptions
from local.template import REPO, TEMPLATE, load_template, stack_name_from_samconfig

pytestmark = pytest.mark.integration

MINI_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  QueueName: {{Type: String, Default: alert-actions}}
Globals:
  Function:
    Timeout: 20
    Environment:
      Variables:
        TOPIC_ARN: !Ref Topic
Resources:
  Stream:
    Type: AWS::Kinesis::Stream
    Properties: {{Name: !Sub "${{AWS::StackName}}-tx", ShardCount: 2}}
  Bucket:
    Type: AWS::S3::Bucket
    Properties: {{BucketName: !Sub "${{AWS::StackName}}-data-${{AWS::AccountId}}"}}
  Dlq:
    Type: AWS::SQS::Queue
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Ref QueueName
      VisibilityTimeout: 1
      RedrivePolicy: {{deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 2}}
  Topic:
    Type: AWS::SNS::Topic
  Subscription:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref Topic
      Protocol: sqs
      Endpoint: !GetAtt Queue.Arn
      RawMessageDelivery: true
      FilterPolicy: {{kind: [alert]}}
  Table:
    Type: AWS::Serverless::SimpleTable
    Properties: {{PrimaryKey: {{Name: pk, Type: String}}}}
  ActFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code}/act
      Handler: app.lambda_handler
      Environment: {{Variables: {{TABLE: !Ref Table}}}}
      Events:
        FromQueue:
          Type: SQS
          Properties: {{Queue: !GetAtt Queue.Arn, BatchSize: 5, FunctionResponseTypes: [ReportBatchItemFailures]}}
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code}/tick
      Handler: app.lambda_handler
      Events:
        Every:
          Type: ScheduleV2
          Properties: {{ScheduleExpression: rate(1 minute), Input: '{{"action": "check"}}'}}
"""

ACT_HANDLER = """
import json, os
SEEN = []
def lambda_handler(event, context):
    failures = []
    for record in event["Records"]:
        SEEN.append((record["body"], record["eventSource"], os.environ["TABLE"]))
        if "poison" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

# Loops like score_and_alert: until the context says the timeout is near.
TICK_HANDLER = """
import time
CALLS = []
def lambda_handler(event, context):
    CALLS.append(event)
    while context.get_remaining_time_in_millis() > 1000:
        time.sleep(0.05)
    return {"remaining_ms": context.get_remaining_time_in_millis()}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mini_template(tmp_path: Path) -> Path:
    for name, code in (("act", ACT_HANDLER), ("tick", TICK_HANDLER)):
        (tmp_path / "fn" / name).mkdir(parents=True)
        (tmp_path / "fn" / name / "app.py").write_text(textwrap.dedent(code))
    path = tmp_path / "template.yaml"
    path.write_text(MINI_TEMPLATE.format(code=tmp_path / "fn"))
    return path


def test_bootstrap_creates_what_template_yaml_declares_with_the_same_names(tmp_path: Path) -> None:
    template = load_template(TEMPLATE)
    options = StackOptions(data_dir=tmp_path / "data", scheduler=False, apply_migrations=False)
    with Stack(options) as stack:
        kinesis, sqs, sns, ddb, s3 = (boto3.client(s) for s in ("kinesis", "sqs", "sns", "dynamodb", "s3"))
        # asked by name: moto's backends are process-wide and its ListStreams paging drops streams
        # re-created after other tests deleted them
        names = {
            template.physical_name(logical_id) for logical_id in template.of_type("AWS::Kinesis::Stream")
        }
        for name in names:
            assert (
                kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
                == "ACTIVE"
            )
        # the stream names users configure are the template's parameter defaults
        assert names == {"cust-payment-txn-stream", "cust-payment-label-stream"}
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        assert {template.physical_name(b) for b in template.of_type("AWS::S3::Bucket")} <= buckets
        # subsets: moto's backends are process-wide, so other tests' queues, topics and tables show too
        queue_names = {url.rsplit("/", 1)[-1] for url in sqs.list_queues()["QueueUrls"]}
        assert {template.physical_name(q) for q in template.of_type("AWS::SQS::Queue")} <= queue_names
        topics = {t["TopicArn"].rsplit(":", 1)[-1] for t in sns.list_topics()["Topics"]}
        assert {template.physical_name(t) for t in template.of_type("AWS::SNS::Topic")} <= topics
        tables = set(ddb.list_tables()["TableNames"])
        assert {template.physical_name(t) for t in template.of_type("AWS::DynamoDB::Table")} <= tables
        # the queue acting on alerts is subscribed to the alert topic, with the template's redrive policy
        act = stack.function("act_on_alert")
        queue_url = stack.resources.queue_url_for_arn(act.queue_arn)
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] >= 1
        endpoints = {s["Endpoint"] for s in sns.list_subscriptions()["Subscriptions"]}
        assert act.queue_arn in endpoints
        # each function's settings point at these resources
        assert os.environ["TX_STREAM"] == "cust-payment-txn-stream"
        assert os.environ["AWS_ENDPOINT_URL_KINESIS"] == stack.moto_url
        assert os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"] == stack.redshift.url
        # the stream, the alert fan-out and the card locks are served by three moto processes (the
        # resources above were listed through them)
        urls = {service: os.environ[f"AWS_ENDPOINT_URL_{service}"] for service in MOTO_SERVICES}
        assert urls == {service: stack.exports()[f"AWS_ENDPOINT_URL_{service}"] for service in MOTO_SERVICES}
        assert urls["SNS"] == urls["SQS"] and len({urls["KINESIS"], urls["SQS"], urls["DYNAMODB"]}) == 3
        assert len({moto.pid for moto in stack.motos.values()} - {None}) == 3
        assert stack.function("score_and_alert").schedules, "score_and_alert has a schedule in the template"


def test_scheduler_delivers_sqs_batches_with_partial_failures_and_redrive(
    tmp_path: Path, mini_template: Path
) -> None:
    options = StackOptions(data_dir=tmp_path / "data", template=mini_template, apply_migrations=False)
    with Stack(options) as stack:
        topic = next(iter(stack.resources.topics.values()))
        sns = boto3.client("sns")
        for body, kind in (("a1", "alert"), ("filtered-out", "other"), ("poison", "alert"), ("a2", "alert")):
            sns.publish(
                TopicArn=topic,
                Message=body,
                MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
            )
        act = sys.modules["lambda_ActFunction"]
        deadline = time.monotonic() + 20
        dlq = stack.resources.queues["Dlq"]
        dead = []
        while time.monotonic() < deadline and not dead:
            dead = boto3.client("sqs").receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
        bodies = [body for body, _, _ in act.SEEN]
        assert sorted(set(bodies)) == ["a1", "a2", "poison"]  # the filter policy kept "filtered-out" away
        assert bodies.count("a1") == 1 and bodies.count("a2") == 1  # succeeded once, deleted
        assert bodies.count("poison") == 2  # maxReceiveCount 2, then the DLQ
        assert [m["Body"] for m in dead] == ["poison"]
        assert {source for _, source, _ in act.SEEN} == {"aws:sqs"}
        # the template's environment, resolved: an unnamed table gets "<stack>-<LogicalId>"
        assert {table for _, _, table in act.SEEN} == {f"{stack.template.stack_name}-Table"}
        stats = stack.scheduler.stats["act"]
        assert stats.messages == 4 and stats.messages_deleted == 2 and stats.errors == 0


def test_scheduled_function_runs_with_its_input_and_stops_promptly(
    tmp_path: Path, mini_template: Path
) -> None:
    options = StackOptions(
        data_dir=tmp_path / "data", template=mini_template, apply_migrations=False, run_now=("tick",)
    )
    stack = Stack(options).start()
    try:
        tick = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (tick and tick.CALLS):
            tick = sys.modules.get("lambda_TickFunction")
            time.sleep(0.1)
        assert tick is not None and tick.CALLS == [{"action": "check"}]
    finally:
        started = time.monotonic()
        stack.stop()
    # the handler loops until its 20 s timeout is near; stopping makes its remaining time zero
    assert time.monotonic() - started < 5
    assert not (tmp_path / "data" / LOCK_FILE).exists()


QUICK_TICK_HANDLER = """
import threading, time
CALLS = []
def lambda_handler(event, context):
    CALLS.append(time.monotonic())
    if len(CALLS) == 2:
        raise RuntimeError("a failed invocation waits for the next tick")
    return {}
"""

SLOW_ACT_HANDLER = """
import threading, time
ACTIVE, PEAK, LOCK = [0], [0], threading.Lock()
def lambda_handler(event, context):
    with LOCK:
        ACTIVE[0] += 1
        PEAK[0] = max(PEAK[0], ACTIVE[0])
    time.sleep(0.3)
    with LOCK:
        ACTIVE[0] -= 1
    return {"batchItemFailures": []}
"""


def test_back_to_back_function_and_concurrent_queue_pollers(tmp_path: Path, mini_template: Path) -> None:
    """back_to_back re-invokes at once after a success (not after a failure, which waits for its tick);
    queue_pollers hand out that many SQS batches at once."""
    (mini_template.parent / "fn" / "tick" / "app.py").write_text(textwrap.dedent(QUICK_TICK_HANDLER))
    (mini_template.parent / "fn" / "act" / "app.py").write_text(textwrap.dedent(SLOW_ACT_HANDLER))
    options = StackOptions(
        data_dir=tmp_path / "data", template=mini_template, apply_migrations=False, scheduler=False
    )
    with Stack(options) as stack:
        topic = next(iter(stack.resources.topics.values()))
        sns = boto3.client("sns")
        for i in range(30):  # queued before the pollers start, so batches are there for all three
            sns.publish(
                TopicArn=topic,
                Message=f"a{i}",
                MessageAttributes={"kind": {"DataType": "String", "StringValue": "alert"}},
            )
        # another test's stack may hold the freeze already (a session fixture): then it stays held
        gc_before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
        stack.start_scheduler(run_now=("tick",), back_to_back=("tick",), queue_pollers=3)
        # while the scheduler runs: the heap frozen out of the GC, checkpoints deferred (see GC_THRESHOLDS)
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == GC_THRESHOLDS
        setting = stack.engine.connection().execute("SELECT current_setting('checkpoint_threshold')")
        assert setting.fetchone()[0] in ("1.0 GiB", "1.0 GB", "1000.0 MB", "953.6 MiB")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stack.scheduler.stats["act"].messages_deleted < 30:
            time.sleep(0.1)
        tick, act = sys.modules["lambda_TickFunction"], sys.modules["lambda_ActFunction"]
        calls = list(tick.CALLS)
        assert stack.scheduler.stats["act"].messages_deleted == 30
    assert gc.get_freeze_count() == frozen_before and gc.get_threshold() == gc_before  # undone by stop()
    assert act.PEAK[0] == 3  # three batches in flight at once, never more
    # run at start, again at once, then it failed: the next run waits for the 1-minute schedule
    assert len(calls) == 2 and calls[1] - calls[0] < 1


def test_data_directory_from_an_earlier_run_is_refused_then_wiped_with_fresh(
    tmp_path: Path, mini_template: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "warehouse.duckdb").write_bytes(b"old")
    options = StackOptions(data_dir=data, template=mini_template, apply_migrations=False, scheduler=False)
    with pytest.raises(StackError, match=r"earlier run.*--fresh"):
        Stack(options).start()
    assert (data / "warehouse.duckdb").read_bytes() == b"old"  # refused: nothing touched
    options.fresh = True
    with Stack(options):
        assert (data / LOCK_FILE).read_text() == str(os.getpid())


# -- the CLI's error paths: one line, non-zero exit, no traceback -------------------------------------


def _up(*args: str, timeout: float = 60, pre: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{pre}\nimport sys\nfrom local.__main__ import main\nsys.exit(main(['up', *sys.argv[1:]]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _one_clear_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr


def test_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _up("--data-dir", str(tmp_path / "d"), "--moto-port", str(port))
    _one_clear_line(proc, f"port {port} on 127.0.0.1 is already in use (--moto-port)")


def test_stale_and_busy_data_directories_are_one_clear_line(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "warehouse.duckdb").write_bytes(b"")
    _one_clear_line(_up("--data-dir", str(stale)), "rerun with --fresh")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / LOCK_FILE).write_text(str(os.getpid()))  # this test process is alive
    _one_clear_line(_up("--data-dir", str(busy)), f"in use by another local stack (pid {os.getpid()})")


def test_missing_dependency_is_one_clear_line(tmp_path: Path) -> None:
    block_moto = textwrap.dedent(
        """
        import sys
        class _NoMoto:
            def find_spec(self, name, path=None, target=None):
                if name == "moto" or name.startswith("moto."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _NoMoto())
        """
    )
    proc = _up("--data-dir", str(tmp_path / "d"), pre=block_moto)
    _one_clear_line(proc, "missing dependency 'moto")
    assert "make install" in proc.stderr


def test_missing_template_is_one_clear_line(tmp_path: Path) -> None:
    _one_clear_line(
        _up("--data-dir", str(tmp_path / "d"), "--template", str(tmp_path / "nope.yaml")), "not found"
    )


def test_up_prints_exports_and_stops_cleanly_on_ctrl_c(tmp_path: Path, mini_template: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local",
            "up",
            "--data-dir",
            str(tmp_path / "d"),
            "--template",
            str(mini_template),
            "--no-history",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        exports = dict(
            line[len("export ") :].strip().split("=", 1) for line in lines if line.startswith("export ")
        )
        assert exports.get("AWS_ACCESS_KEY_ID") == "testing", "".join(lines) + proc.stderr.read()
        # the printed endpoints serve: the AWS CLI or another process could use them
        kinesis = boto3.client("kinesis", endpoint_url=exports["AWS_ENDPOINT_URL_KINESIS"])
        assert f"{stack_name_from_samconfig()}-tx" in kinesis.list_streams()["StreamNames"]
        rsd = boto3.client("redshift-data", endpoint_url=exports["AWS_ENDPOINT_URL_REDSHIFT_DATA"])
        assert rsd.list_statements()["Statements"] == []
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "d" / LOCK_FILE).exists()


# ------------------------------------------------------- streaming refresh: kept shard lists and iterators


def test_refresh_keeps_shard_lists_and_iterators_and_replaces_an_expired_iterator(aws_endpoints) -> None:
    """score_and_alert refreshes the transaction MV every cycle: a refresh after the first reads on with
    the iterators the last one ended with (no ListShards, no GetShardIterator); an iterator Kinesis
    has expired is replaced from the committed checkpoint, losing and repeating nothing."""
    from local.redshift import streaming
    from local.redshift.engine import Engine

    kinesis = boto3.client("kinesis")
    stream = f"refresh-{os.getpid()}-{time.monotonic_ns()}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})

    def put(ids: range) -> None:
        records = [{"Data": json.dumps({"ID": i}).encode(), "PartitionKey": f"k{i}"} for i in ids]
        assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0

    engine = Engine(":memory:", auto_refresh_interval=None)
    try:
        engine.execute("CREATE EXTERNAL SCHEMA kin FROM KINESIS IAM_ROLE default")
        engine.execute(
            "CREATE MATERIALIZED VIEW mv AS SELECT json_extract_path_text(from_varbyte(kinesis_data, 'utf-8'), "
            f"'ID')::int AS id FROM kin.\"{stream}\" WHERE can_json_parse(kinesis_data)"
        )
        client = engine.streaming._kinesis()
        calls: list[str] = []
        client.meta.events.register("before-call.kinesis.*", lambda model, **_: calls.append(model.name))
        put(range(0, 20))
        assert engine.refresh("mv") == 20
        assert calls.count("ListShards") == 1 and calls.count("GetShardIterator") == 2
        calls.clear()
        put(range(20, 30))
        assert engine.refresh("mv") == 10
        assert set(calls) == {"GetRecords"}

        real_get_records = client.get_records
        expired: list[str] = []

        def get_records(**kwargs):  # Kinesis expires an iterator after 5 minutes
            if not expired:
                expired.append(kwargs["ShardIterator"])
                raise client.exceptions.ExpiredIteratorException(
                    {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}},
                    "GetRecords",
                )
            return real_get_records(**kwargs)

        client.get_records = get_records
        calls.clear()
        put(range(30, 40))
        assert engine.refresh("mv") == 10
        assert expired and calls.count("GetShardIterator") == 1
        ids = [row[0] for row in engine.execute("SELECT id FROM mv ORDER BY id").rows]
        assert ids == list(range(40))
        assert streaming.ITERATOR_TTL < 300  # kept iterators are renewed before Kinesis' 5 minutes
    finally:
        engine.close()


def test_the_heap_stays_frozen_until_the_last_of_several_stacks_releases_it() -> None:
    from local.stack import _FrozenHeap

    before = gc.get_threshold()
    heap = _FrozenHeap()
    heap.acquire()
    heap.acquire()  # a second stack's scheduler
    heap.release()
    assert gc.get_freeze_count() > 0 and gc.get_threshold() == GC_THRESHOLDS
    heap.release()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
