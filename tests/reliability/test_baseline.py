"""The clean run every fault scenario is compared with: a seeded slice streamed through the producer."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Pipeline, record

pytestmark = pytest.mark.reliability


def test_clean_stream_holds_every_invariant(pipeline: Pipeline) -> None:
    transactions = pipeline.next_transactions(150)
    ids = {tx.TRANSACTION_ID for tx in transactions}
    before = pipeline.snapshot(ids)
    pipeline.write(transactions)
    after = pipeline.check_invariants(ids, pipeline.drain(ids))
    assert after.scored_rows == 150
    assert after.flagged > 0, "the seeded slice must contain alerts, or the alert invariants prove nothing"
    record("clean stream (baseline)", "nothing: 150 transactions via KinesisWriter", before, after)
