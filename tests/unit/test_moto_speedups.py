"""moto speed-ups keep the AWS semantics they replace: Kinesis GetRecords (every record once, in order,
paged by Limit) and its JSON, DynamoDB transactions and concurrent writes, SQS send and receive."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest
from moto import mock_aws

from local import moto_speedups

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """mock_aws in this process: no endpoint variable left by another test may send boto3 elsewhere
    (a test that wants the moto server asks for aws_endpoints, which sets them again)."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)


def _read_all(client, stream: str, shard_id: str, limit: int) -> list[bytes]:
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    seen: list[bytes] = []
    while True:
        page = client.get_records(ShardIterator=iterator, Limit=limit)
        seen += [r["Data"] for r in page["Records"]]
        if not page["Records"]:
            return seen
        iterator = page["NextShardIterator"]


def test_records_read_once_in_order_across_pages_and_after_more_puts() -> None:
    moto_speedups.apply()
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="s", ShardCount=1)
        shard_id = client.list_shards(StreamName="s")["Shards"][0]["ShardId"]
        sent = [f"r{i}".encode() for i in range(1_234)]
        for start in range(0, len(sent), 500):
            client.put_records(
                StreamName="s", Records=[{"Data": d, "PartitionKey": "k"} for d in sent[start : start + 500]]
            )
        assert _read_all(client, "s", shard_id, limit=100) == sent
        assert _read_all(client, "s", shard_id, limit=10_000) == sent
        sequence_numbers = [
            int(r["SequenceNumber"])
            for r in client.get_records(
                ShardIterator=client.get_shard_iterator(
                    StreamName="s", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"],
                Limit=5,
            )["Records"]
        ]
        assert sequence_numbers == sorted(sequence_numbers) and len(set(sequence_numbers)) == 5
        after = client.get_shard_iterator(
            StreamName="s",
            ShardId=shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=str(sequence_numbers[-1]),
        )["ShardIterator"]
        assert client.get_records(ShardIterator=after, Limit=2)["Records"][0]["Data"] == sent[5]


def test_dynamodb_transaction_rolls_back_only_what_it_wrote() -> None:
    moto_speedups.apply()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"pk": {"S": "kept"}, "n": {"N": "1"}})
        client.put_item(TableName="t", Item={"pk": {"S": "blocker"}})
        with pytest.raises(client.exceptions.TransactionCanceledException):
            client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}},
                    {
                        "Update": {
                            "TableName": "t",
                            "Key": {"pk": {"S": "kept"}},
                            "UpdateExpression": "SET n = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": "t",
                            "Item": {"pk": {"S": "blocker"}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        items = {i["pk"]["S"]: i for i in client.scan(TableName="t")["Items"]}
        assert set(items) == {"kept", "blocker"}
        assert items["kept"]["n"] == {"N": "1"}
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}}])
        assert {i["pk"]["S"] for i in client.scan(TableName="t")["Items"]} == {"kept", "blocker", "new"}


def test_a_table_copied_outside_a_transaction_is_independent() -> None:
    import copy

    from moto.dynamodb.models import dynamodb_backends

    moto_speedups.apply()
    name = f"t-{uuid.uuid4().hex}"  # moto's backends are process-wide: other tests' tables live on
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = dynamodb_backends["123456789012"]["us-east-1"].tables[name]
        backup = copy.deepcopy(table)
        client.put_item(TableName=name, Item={"pk": {"S": "later"}})
        assert backup is not table and len(backup.items) == 0 and len(table.items) == 1


def test_kinesis_records_round_trip_through_the_direct_json() -> None:
    moto_speedups.apply()
    name = f"s-{uuid.uuid4().hex}"  # moto's backends are process-wide: other tests' streams live on
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName=name, ShardCount=1)
        sent = [b"\x00\xffbinary", "caf\u00e9".encode(), b"{}"]
        put = client.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": "k"} for d in sent])
        assert put["FailedRecordCount"] == 0
        assert [r["ShardId"] for r in put["Records"]] == ["shardId-000000000000"] * 3
        shard = client.list_shards(StreamName=name)["Shards"][0]["ShardId"]
        iterator = client.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        page = client.get_records(ShardIterator=iterator["ShardIterator"])
        assert [r["Data"] for r in page["Records"]] == sent
        assert [r["SequenceNumber"] for r in page["Records"]] == [r["SequenceNumber"] for r in put["Records"]]
        assert all(r["ApproximateArrivalTimestamp"].tzinfo is not None for r in page["Records"])
        assert page["MillisBehindLatest"] == 0 and page["NextShardIterator"]
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.put_records(StreamName="missing", Records=[{"Data": b"x", "PartitionKey": "k"}])


def test_concurrent_updates_of_one_item_are_all_counted(aws_endpoints: str) -> None:
    """Without the lock, moto's UpdateItem ADD from concurrent requests lost increments (397 of 400)."""
    from concurrent.futures import ThreadPoolExecutor

    client = boto3.client("dynamodb")
    client.create_table(
        TableName="counter",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def add_one(_: int) -> None:
        client.update_item(
            TableName="counter",
            Key={"pk": {"S": "card"}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add_one, range(200)))
    assert client.get_item(TableName="counter", Key={"pk": {"S": "card"}})["Item"]["n"] == {"N": "200"}


def test_sqs_counts_and_deduplication_survive_the_lean_send() -> None:
    moto_speedups.apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for i in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessages"] == "3"
        assert counts["ApproximateNumberOfMessagesNotVisible"] == "2"
        assert [m["Body"] for m in got] == ["m0", "m1"]
        fifo = sqs.create_queue(
            QueueName="q.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        for _ in range(2):  # the same body twice: deduplicated by content
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        assert len(sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10)["Messages"]) == 1
