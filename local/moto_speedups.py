"""Make moto's Kinesis shard O(batch) instead of O(shard length) per call, DynamoDB's
TransactWriteItems O(items written) instead of O(table size), SQS's ReceiveMessage O(batch) instead of
O(queue length) per message, and DynamoDB safe for concurrent callers.

moto 5.x rebuilds the list of every key of a shard on each PutRecord(s) and walks the shard from its
first record on each GetRecords, so a stream filled at the demo's 1,000 records/s slows down to tens
of records per second within a minute. Sequence numbers within a moto shard are consecutive integers
(each put takes the last one plus one), so the next records can be looked up directly.

moto 5.x also deep-copies every table a TransactWriteItems touches, as its rollback backup: with one
transaction per alert (act_on_alert's case + card lock) each alert costs more than the last (about
120 ms per alert over the first thousand, 240 ms over the next). Only the items the transaction
writes can change, so those are the backup.

moto 5.x turns each response into JSON with a generic, shape-driven serializer; for PutRecords and
GetRecords (hundreds of records per call) that was three quarters of moto's Kinesis time. Those two
build their JSON directly, in the wire format botocore reads (Data base64, timestamps in epoch s).

moto's DynamoDB backend is not thread-safe: two UpdateItems with ADD on the same item, from two
threads of the server, can both read the old value (a card lock counted once for two alerts). Each
DynamoDB request therefore runs under one lock, as DynamoDB applies each write atomically.

moto 5.x's ReceiveMessage asks for the queue's attributes once per message it returns, to read the
retention period, and SendMessage (each SNS delivery) once per message, to read
ContentBasedDeduplication; that computes every attribute, including the counts of visible,
in-flight and delayed messages (a walk over the whole queue), so a backlog of alerts slowed its own
draining. Sending now skips the counts; receiving reads the retention period alone.

moto's ReceiveMessage checks that a message is visible and marks it received in two steps, without a
lock: two server threads (the stack's concurrent act_on_alert pollers) could both receive the same
in-flight message, and both move a message past its redrive count to the DLQ (the second fails). Each
receive pass, delete and visibility change therefore runs under one lock; a long poll waits outside it.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from moto.core.utils import camelcase_to_underscores, unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.kinesis import models
from moto.kinesis.responses import KinesisResponse
from moto.sqs.models import Message, Queue, SQSBackend

_applied = False
_transaction = threading.local()  # set while this thread runs moto's transact_write_items
_moto_transact_write_items = DynamoDBBackend.transact_write_items
_moto_dynamodb_call_action = DynamoHandler.call_action
_dynamodb_lock = threading.RLock()  # one DynamoDB request at a time in this process's moto
_moto_send_message = SQSBackend.send_message
_moto_receive_message = SQSBackend.receive_message
_moto_delete_message = SQSBackend.delete_message
_moto_change_message_visibility = SQSBackend.change_message_visibility
_sqs_lock = threading.RLock()  # one SQS receive pass, delete or visibility change at a time
_moto_queue_attributes = Queue.attributes.fget
_sending = threading.local()  # set while this thread runs moto's send_message
_MESSAGE_COUNTS = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
    }
)


def _first_key(shard: models.Shard) -> int:
    return next(iter(shard.records)) if shard.records else 0


def _last_key(shard: models.Shard) -> int:
    return next(reversed(shard.records)) if shard.records else 0


def _get_records(shard: models.Shard, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
    last_seen = int(last_sequence_id)
    if not shard.records:
        return [], last_seen, 0
    newest = _last_key(shard)
    start = max(last_seen + 1, _first_key(shard))
    stop = newest if limit is None else min(newest, start + limit - 1)
    results = [record for seq in range(start, stop + 1) if (record := shard.records.get(seq)) is not None]
    if not results:
        return [], last_seen, 0
    behind = shard.records[newest].created_at - results[-1].created_at
    return results, results[-1].sequence_number, int(behind * 1000)


def _table_deepcopy(table: Table, memo: dict[int, Any]) -> Table:
    if getattr(_transaction, "active", False):
        return table  # moto's whole-table backup: _transact_write_items keeps the written items instead
    clone = Table.__new__(Table)
    memo[id(table)] = clone
    clone.__dict__.update(copy.deepcopy(table.__dict__, memo))
    return clone


def _transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems, its rollback restoring the items it may have written."""
    saved = []
    for entry in transact_items:
        try:
            op = next(iter(entry.values()))
            table = backend.get_table(op["TableName"])
            key_attrs = [a for a in (table.hash_key_attr, table.range_key_attr) if a]
            key = op["Key"] if "Key" in op else {a: op["Item"][a] for a in key_attrs}
            hash_key, range_key = backend.get_keys_value(table, key)
            saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        except Exception:
            continue  # an invalid operation writes nothing; moto reports it below
    _transaction.active = True
    try:
        _moto_transact_write_items(backend, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(saved):
            items = table.items[hash_key] if range_key is not None else table.items
            key = range_key if range_key is not None else hash_key
            if item is None:
                items.pop(key, None)
            else:
                items[key] = item
        raise
    finally:
        _transaction.active = False


def _dynamodb_call_action(handler: DynamoHandler) -> Any:
    with _dynamodb_lock:
        return _moto_dynamodb_call_action(handler)


def _message_within_retention(backend: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_s = int(backend.get_queue(queue_name).message_retention_period)
    return message.sent_timestamp / 1000 + retention_s > unix_time()


def _send_message(backend: SQSBackend, *args: Any, **kwargs: Any) -> Message:
    _sending.active = True
    try:
        with _sqs_lock:
            return _moto_send_message(backend, *args, **kwargs)
    finally:
        _sending.active = False


def _receive_message(
    backend: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    """moto's receive, one non-waiting pass at a time under the lock; a long poll waits between passes
    outside it (woken by the next send) until the wait time is up."""
    deadline = unix_time() + wait_seconds_timeout
    while True:
        with _sqs_lock:
            received = _moto_receive_message(
                backend, queue_name, count, 0, visibility_timeout, message_attribute_names
            )
        remaining = deadline - unix_time()
        if received or remaining <= 0:
            return received
        backend.get_queue(queue_name).wait_for_messages(min(1.0, remaining))


def _delete_message(backend: SQSBackend, queue_name: str, receipt_handle: str) -> None:
    with _sqs_lock:
        _moto_delete_message(backend, queue_name, receipt_handle)


def _change_message_visibility(
    backend: SQSBackend, queue_name: str, receipt_handle: str, visibility_timeout: int
) -> None:
    with _sqs_lock:
        _moto_change_message_visibility(backend, queue_name, receipt_handle, visibility_timeout)


def _queue_attributes(queue: Queue) -> dict[str, Any]:
    """moto's Queue.attributes; while sending, without the message counts (sending never reads them)."""
    if not getattr(_sending, "active", False):
        return _moto_queue_attributes(queue)
    names = [a for a in queue.BASE_ATTRIBUTES if a not in _MESSAGE_COUNTS]
    names += queue.FIFO_ATTRIBUTES if queue.fifo_queue else []
    names += queue.KMS_ATTRIBUTES if queue.kms_master_key_id else []
    result = {name: getattr(queue, camelcase_to_underscores(name)) for name in names}
    if queue.policy:
        result["Policy"] = queue.policy
    if queue.redrive_policy:
        result["RedrivePolicy"] = json.dumps(queue.redrive_policy)
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in result.items()}


_JSON_HEADERS = {"status": 200, "content-type": "application/x-amz-json-1.1"}


def _put_records_json(response: KinesisResponse) -> tuple[str, dict[str, Any]]:
    result = response.kinesis_backend.put_records(
        response._get_param("StreamARN"), response._get_param("StreamName"), response._get_param("Records")
    )
    for record in result["Records"]:
        record["SequenceNumber"] = str(record["SequenceNumber"])
    return json.dumps(result), dict(_JSON_HEADERS)


def _get_records_json(response: KinesisResponse) -> tuple[str, dict[str, Any]]:
    next_iterator, records, behind_ms = response.kinesis_backend.get_records(
        response._get_param("StreamARN"), response._get_param("ShardIterator"), response._get_param("Limit")
    )
    body = {
        "NextShardIterator": next_iterator,
        "Records": [
            {
                "Data": record.data,  # kept base64, as PutRecords received it
                "PartitionKey": record.partition_key,
                "SequenceNumber": str(record.sequence_number),
                "ApproximateArrivalTimestamp": record.created_at,
            }
            for record in records
        ],
        "MillisBehindLatest": behind_ms,
    }
    return json.dumps(body), dict(_JSON_HEADERS)


def apply() -> None:
    """Patch moto's Kinesis shard, DynamoDB and SQS receive in this process (idempotent; the moto
    server runs in-process)."""
    global _applied
    if _applied:
        return
    Table.__deepcopy__ = _table_deepcopy
    DynamoDBBackend.transact_write_items = _transact_write_items
    DynamoHandler.call_action = _dynamodb_call_action
    SQSBackend.is_message_valid_based_on_retention_period = _message_within_retention
    SQSBackend.send_message = _send_message
    SQSBackend.receive_message = _receive_message
    SQSBackend.delete_message = _delete_message
    SQSBackend.change_message_visibility = _change_message_visibility
    Queue.attributes = property(_queue_attributes)
    models.Shard.get_min_sequence_number = _first_key
    models.Shard.get_max_sequence_number = _last_key
    models.Shard.get_records = _get_records
    KinesisResponse.put_records = _put_records_json
    KinesisResponse.get_records = _get_records_json
    _applied = True
