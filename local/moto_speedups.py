"""Make moto's Kinesis shard O(batch) instead of O(shard length) per call, and DynamoDB's
TransactWriteItems O(items written) instead of O(table size).

moto 5.x rebuilds the list of every key of a shard on each PutRecord(s) and walks the shard from its
first record on each GetRecords, so a stream filled at the demo's 1,000 records/s slows down to tens
of records per second within a minute. Sequence numbers within a moto shard are consecutive integers
(each put takes the last one plus one), so the next records can be looked up directly.

moto 5.x also deep-copies every table a TransactWriteItems touches, as its rollback backup: with one
transaction per alert (act_on_alert's case + card lock) each alert costs more than the last (about
120 ms per alert over the first thousand, 240 ms over the next). Only the items the transaction
writes can change, so those are the backup.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.kinesis import models

_applied = False
_transaction = threading.local()  # set while this thread runs moto's transact_write_items
_moto_transact_write_items = DynamoDBBackend.transact_write_items


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


def apply() -> None:
    """Patch moto's Kinesis shard and DynamoDB transactions in this process (idempotent; the moto
    server runs in-process)."""
    global _applied
    if _applied:
        return
    Table.__deepcopy__ = _table_deepcopy
    DynamoDBBackend.transact_write_items = _transact_write_items
    models.Shard.get_min_sequence_number = _first_key
    models.Shard.get_max_sequence_number = _last_key
    models.Shard.get_records = _get_records
    _applied = True
