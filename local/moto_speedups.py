"""Make moto's Kinesis shard O(batch) instead of O(shard length) per call.

moto 5.x rebuilds the list of every key of a shard on each PutRecord(s) and walks the shard from its
first record on each GetRecords, so a stream filled at the demo's 1,000 records/s slows down to tens
of records per second within a minute. Sequence numbers within a moto shard are consecutive integers
(each put takes the last one plus one), so the next records can be looked up directly.
"""

from __future__ import annotations

from moto.kinesis import models

_applied = False


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


def apply() -> None:
    """Patch moto's Kinesis shard in this process (idempotent; the moto server runs in-process)."""
    global _applied
    if _applied:
        return
    models.Shard.get_min_sequence_number = _first_key
    models.Shard.get_max_sequence_number = _last_key
    models.Shard.get_records = _get_records
    _applied = True
