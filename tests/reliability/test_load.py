"""Load: the producer at twice the demo's rate while score_and_alert runs on its poll interval; lag may
grow, nothing is lost or doubled, and the pipeline drains afterwards.

The burst is short by default so that the folder stays within a few minutes on two cores;
RELIABILITY_LOAD_SECONDS=60 runs the full minute."""

from __future__ import annotations

import os
import threading
import time

import pytest

from local.demo import DemoConfig
from producer.kinesis import KinesisWriter
from producer.stream import run_stream
from tests.reliability.conftest import Pipeline, record

pytestmark = pytest.mark.reliability

RATE = 2 * DemoConfig().rate
SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "1"))


def test_twice_the_demo_rate_holds_the_invariants_and_recovers(pipeline: Pipeline) -> None:
    first_id = pipeline.live.__next__()  # keep ids contiguous: this transaction opens the burst
    produced: list[int] = [first_id.TRANSACTION_ID]
    stop = threading.Event()
    scoring_errors: list[str] = []

    def score_continuously() -> None:
        while not stop.is_set():
            try:
                pipeline.score_and_alert()
            except Exception as exc:  # reported, not swallowed: the assertion below fails on it
                scoring_errors.append(f"{type(exc).__name__}: {exc}")
            stop.wait(0.5)

    scorer = threading.Thread(target=score_continuously, daemon=True)
    scorer.start()
    started = time.monotonic()
    with KinesisWriter(pipeline.sql.tx_stream) as writer:
        writer.put(pipeline.encode([first_id])[0], partition_key=str(first_id.CUSTOMER_ID))
        stats = run_stream(
            pipeline.live,
            writer,
            None,
            RATE,
            duration_s=SECONDS,
            on_produced=lambda tx, _ms: produced.append(tx.TRANSACTION_ID),
            start_date=pipeline.world.config.start_date,
        )
    produce_s = time.monotonic() - started
    ids = set(produced)
    assert len(ids) == len(produced) == stats.transactions + 1 and stats.failed == 0
    assert max(ids) - min(ids) + 1 == len(ids), "the burst's ids are contiguous"
    lag_at_end = len(ids) - pipeline.snapshot(ids).scored_distinct
    stop.set()
    scorer.join(60)
    assert scoring_errors == []
    after = pipeline.check_invariants(ids, pipeline.drain(ids, timeout_s=240))
    drained_s = time.monotonic() - started
    record(
        "load at 2x the demo rate",
        f"{len(ids)} transactions at {RATE:.0f}/s target ({stats.rate:.0f}/s achieved) for {SECONDS:g} s",
        {"unscored_when_producer_stopped": lag_at_end, "produce_s": round(produce_s, 1)},
        after,
        drained_after_s=round(drained_s, 1),
    )
