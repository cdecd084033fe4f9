"""Several pollers on one queue of the local moto server, as the stack runs act_on_alert: a message is
received by one poller at a time, and a message past its redrive count moves to the DLQ once.

moto's ReceiveMessage checks a message's visibility and marks it received in two steps without a lock,
so two server threads could hand the same message to two pollers (SQS's in-flight guarantee broken)."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import boto3
import pytest

pytestmark = pytest.mark.integration

POLLERS = 4


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """The server runs in this process: switching threads every 10 us instead of 5 ms makes an
    unlocked check-then-mark race show up in (nearly) every run instead of one in two."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def _poll_concurrently(
    queue_url: str, rounds: int, *, batch: int, visibility_timeout: int, delete: bool
) -> Counter:
    """POLLERS threads receive (and optionally delete) for `rounds` receives each; messages seen by id."""
    seen: Counter = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def poller() -> None:
        sqs = boto3.client("sqs", region_name="us-east-1")
        try:
            for _ in range(rounds):
                messages = sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=batch, VisibilityTimeout=visibility_timeout
                ).get("Messages", [])
                with lock:
                    seen.update(m["MessageId"] for m in messages)
                if delete and messages:
                    sqs.delete_message_batch(
                        QueueUrl=queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=poller) for _ in range(POLLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return seen


def _send(sqs: object, queue_url: str, n: int) -> None:
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(min(10, n - start))],
        )


def test_concurrent_pollers_never_receive_an_in_flight_message(aws_endpoints: str) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    _send(sqs, queue_url, 1000)
    seen = _poll_concurrently(queue_url, rounds=30, batch=10, visibility_timeout=60, delete=True)
    assert sum(seen.values()) == 1000 and set(seen.values()) == {1}, (
        f"{sum(n > 1 for n in seen.values())} messages received twice while in flight"
    )


def test_concurrent_pollers_move_each_message_past_its_redrive_count_to_the_dlq_once(
    aws_endpoints: str,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    name = f"q-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})},
    )["QueueUrl"]
    _send(sqs, queue_url, 100)
    # never deleted, visible again at once: each message is received until its redrive count moves it
    _poll_concurrently(queue_url, rounds=40, batch=10, visibility_timeout=0, delete=False)
    moved: Counter = Counter()
    while batch := sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages"
    ):
        moved.update(m["Body"] for m in batch)
    assert sum(moved.values()) == 100 and set(moved.values()) == {1}
    left = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"
