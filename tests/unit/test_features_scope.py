"""THE feature definition does not depend on how much of the history it is asked about.

A scoring pass asks for the features of a few stream transactions: the definition then reads a card's
30 days as its spans of bounds plus the stretches between them, each stretch summed into one row. The
features must be those the same transactions get when the whole history is featurised (every
transaction its own row), to the last count and cent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from local.evaluate import MODEL_INPUTS
from local.features import compute_history_features, prepare_history_warehouse
from local.redshift.engine import Engine
from tests.unit.conftest import add_history, add_stream

pytestmark = pytest.mark.unit

START = datetime(2018, 6, 1)
LABELLED_UNTIL = START + timedelta(days=25)
# every model input: the card's windows read stretches in a pass, and nothing else may move either
FEATURES = tuple(column.lower() for column in MODEL_INPUTS["all"])


def card_history(days: int = 45) -> list[tuple[int, datetime, int, int, float]]:
    """Two cards over `days` days: 0-4 transactions a day at random seconds, some at the same second."""
    rng = random.Random(7)
    rows, tx = [], 1
    for customer in (1, 2):
        for day in range(days):
            for _ in range(rng.randint(0, 4)):
                at = START + timedelta(days=day, seconds=rng.randrange(86_400))
                copies = 2 if rng.random() < 0.1 else 1  # a same-second pair now and then
                for _ in range(copies):
                    rows.append((tx, at, customer, rng.randint(1, 5), round(rng.uniform(1, 300), 2)))
                    tx += 1
    return rows


def labelled(rows: list[tuple[int, datetime, int, int, float]]) -> list[tuple]:
    """History rows with labels: some frauds, so the terminal side's known-fraud features are not all
    "none"; only early ones, which stay in the history in every split below (stream rows carry none)."""
    return [(*row, int(row[0] % 13 == 0 and row[1] < LABELLED_UNTIL)) for row in rows]


def model_inputs(engine: Engine, where: str) -> dict[int, dict[str, float]]:
    columns = ", ".join(FEATURES)
    result = engine.execute(f"SELECT transaction_id, {columns} FROM tx_features WHERE {where}")
    # as floats: tx_amount is a DECIMAL, which pytest.approx compares only with a warning
    return {row[0]: dict(zip(FEATURES, map(float, row[1:]), strict=True)) for row in result.rows}


@pytest.fixture(scope="module")
def whole_history() -> Iterator[dict[int, dict[str, float]]]:
    """The features of every transaction, the whole history featurised at once."""
    engine = Engine(":memory:", auto_refresh_interval=None)
    try:
        prepare_history_warehouse(engine)
        add_history(engine, labelled(card_history()))
        yield model_inputs(engine, "source = 'history'")
    finally:
        engine.close()


@pytest.mark.parametrize(
    "newest",
    [3, 12, 40],
    ids=["targets within hours", "targets over a few days", "targets over two weeks"],
)
def test_stream_targets_get_their_whole_history_features(
    whole_history: dict[int, dict[str, float]], newest: int
) -> None:
    rows = sorted(card_history(), key=lambda row: (row[1], row[0]))
    history, stream = rows[:-newest], rows[-newest:]
    engine = Engine(":memory:", auto_refresh_interval=None)
    try:
        prepare_history_warehouse(engine)
        add_history(engine, labelled(history))
        compute_history_features(engine)
        add_stream(engine, stream)
        scored = model_inputs(engine, "source = 'stream'")
    finally:
        engine.close()
    assert sorted(scored) == sorted(row[0] for row in stream)
    for tx, got in scored.items():
        for name, value in got.items():
            assert value == pytest.approx(whole_history[tx][name], rel=1e-9, abs=1e-9), (tx, name)
