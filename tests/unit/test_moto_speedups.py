"""The moto Kinesis speed-up keeps GetRecords' semantics: every record once, in order, paged by Limit."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from local import moto_speedups

pytestmark = pytest.mark.unit


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
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = dynamodb_backends["123456789012"]["us-east-1"].tables["t"]
        backup = copy.deepcopy(table)
        client.put_item(TableName="t", Item={"pk": {"S": "later"}})
        assert backup is not table and len(backup.items) == 0 and len(table.items) == 1
