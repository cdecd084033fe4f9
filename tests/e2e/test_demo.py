"""The whole pipeline on the embedded stack: a short demo on a small world, then its invariants.

One demo run (session-scoped) feeds every assertion: producer -> Kinesis (moto) -> streaming MV ->
score_and_alert (scored, outbox, SNS) -> SQS -> act_on_alert (DynamoDB case + card lock) -> report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local.demo import DemoConfig, DemoResult, run_demo
from local.report import CHARTS, REPORT

pytestmark = pytest.mark.e2e

# A floor for a working model on this small world (its validation recall at 0.5 is well above it); the
# exact no-silent-drop check is that every score above the threshold became an alert.
MIN_RECALL = 0.4


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, DemoResult]:
    from rich.console import Console

    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(
        customers=1000,
        days=21,
        seed=7,
        rate=100,
        minutes=0.5,
        out_dir=out,
        live_view=False,
        drain_timeout_s=180,
    )
    console = Console(file=(out / "console.txt").open("w"), width=120)
    return config, run_demo(config, console)


def test_every_valid_transaction_is_ingested_and_scored_exactly_once(
    demo: tuple[DemoConfig, DemoResult],
) -> None:
    config, r = demo
    assert r.producer_failed == 0
    assert r.produced > 0.5 * config.rate * config.minutes * 60  # the producer kept close to its rate
    assert r.drained, "the pipeline did not catch up within the drain timeout"
    assert r.ingested == r.ingested_distinct == r.produced
    assert r.scored == r.scored_distinct == r.produced
    assert set(r.scores) == set(r.truth)
    assert all(0.0 <= s <= 1.0 for s in r.scores.values())


def test_every_alert_reached_act_on_alert_and_locked_its_card_once(
    demo: tuple[DemoConfig, DemoResult],
) -> None:
    _, r = demo
    assert r.alerts_outbox, "no alerts at all: nothing was checked"
    assert set(r.alerts_outbox.values()) == {"sent"}
    assert set(r.alerts_consumed) == set(r.alerts_outbox)  # every published alert was delivered
    assert set(r.cases) == set(r.alerts_outbox) and set(r.cases.values()) == {1}
    alerted_by_card: dict[int, set[int]] = {}
    for tx, card in r.alert_customers.items():
        alerted_by_card.setdefault(card, set()).add(tx)
    assert set(r.card_locks) == set(alerted_by_card)
    for card, (lock_count, transactions) in r.card_locks.items():
        assert transactions == alerted_by_card[card]
        assert lock_count == len(transactions), f"card {card} locked {lock_count} times for {transactions}"


def test_alerts_cover_every_score_above_the_threshold(demo: tuple[DemoConfig, DemoResult]) -> None:
    _, r = demo
    above = {tx for tx, score in r.scores.items() if score >= r.threshold}
    assert set(r.alerts_outbox) == above  # no silent drop between scoring and alerting
    m = r.metrics
    assert m["recall"] == pytest.approx(m["recall_of_scores"])
    assert m["recall"] >= MIN_RECALL
    assert m["precision"] is not None and m["precision"] > 0.5


def test_latency_is_measured_for_every_alert(demo: tuple[DemoConfig, DemoResult]) -> None:
    _, r = demo
    assert len(r.latencies_ms) == len(r.alerts_outbox)
    assert min(r.latencies_ms) > 0
    m = r.metrics
    assert 0 < m["latency_p50_s"] <= m["latency_p99_s"] <= m["latency_max_s"]


def test_report_files_hold_the_measured_numbers(demo: tuple[DemoConfig, DemoResult]) -> None:
    config, r = demo
    report = config.out_dir / REPORT
    assert report in r.report_files
    text = report.read_text()
    m = r.metrics
    assert f"{m['produced']:,} at" in text
    assert f"{m['latency_p50_s']:.2f} s" in text
    assert f"{m['precision']:.1%} / {m['recall']:.1%}" in text
    assert r.model_name in text
    for name in CHARTS.values():
        png = Path(config.out_dir / name)
        assert png in r.report_files
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
