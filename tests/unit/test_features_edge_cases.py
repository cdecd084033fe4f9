"""THE feature definition (`tx_features`) on hand-made transactions, through the local engine.

Edge cases: a card's first transaction, window boundaries to the second, same-second ties, a
terminal with no labelled history, stream labels that arrive after the delay, the compromise day of a
terminal, the card's 14-day amount spikes over its baseline and the terminal's known fraud amounts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.features import compute_history_features, prepare_history_warehouse
from local.redshift.engine import Engine
from tests.unit.conftest import add_history, add_stream

pytestmark = pytest.mark.unit


TABLES = (
    "cust_payment_tx_history",
    "history_features",
    "cust_payment_tx_stream",
    "cust_payment_label_stream",
)


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Engine]:
    engine = Engine(":memory:", auto_refresh_interval=None)
    prepare_history_warehouse(engine)
    yield engine
    engine.close()


@pytest.fixture
def engine(warehouse: Engine) -> Engine:
    for table in TABLES:
        warehouse.execute(f"DELETE FROM {table}")
    return warehouse


def add_label(engine: Engine, tx: int, fraud: int, arrival: str = "2030-01-01 00:00:00") -> None:
    engine.execute(
        "INSERT INTO cust_payment_label_stream (approximate_arrival_timestamp, sequence_number, transaction_id, "
        f"tx_fraud) VALUES ('{arrival}', '{tx}', {tx}, {fraud})"
    )


def features(engine: Engine, where: str = "true") -> dict[int, dict]:
    result = engine.execute(f"SELECT * FROM tx_features WHERE {where}")
    names = [c.name for c in result.columns]
    return {row[0]: dict(zip(names, row, strict=True)) for row in result.rows}


def test_first_transaction_of_a_card(engine: Engine) -> None:
    add_history(engine, [(1, "2018-08-04 22:30:00", 7, 70, 42.50, 0)])  # a Saturday night
    (f,) = features(engine).values()
    assert f["customer_id_nb_tx_1day_window"] == f["customer_id_nb_tx_30day_window"] == 1
    assert f["customer_id_avg_amount_1day_window"] == f["customer_id_avg_amount_30day_window"] == 42.5
    assert (f["tx_during_weekend"], f["tx_during_night"]) == (1, 0)
    # no terminal history at all: counts and risks are 0, not NULL
    assert f["terminal_id_nb_tx_30day_window"] == f["terminal_id_risk_30day_window"] == 0
    assert f["terminal_id_days_since_last_fraud"] == 31 and f["terminal_id_last_known_label"] == 0
    assert f["terminal_id_risk_since_first_fraud"] == 0
    assert f["terminal_id_compromise_day"] == -1, "no known fraud at the terminal"
    assert f["amount_to_baseline_ratio"] == 1, "a new card is compared with itself"
    assert f["customer_quartic_mean_amount_14day_to_baseline_ratio"] == 0, (
        "no earlier transaction on the card"
    )
    assert f["terminal_id_min_fraud_amount_30day_window"] == -1, "no known fraud at the terminal"
    assert f["terminal_id_max_fraud_amount_30day_window"] == -1


def test_customer_windows_are_right_closed_to_the_second(engine: Engine) -> None:
    add_history(
        engine,
        [
            (
                1,
                "2018-08-01 12:00:00",
                7,
                70,
                10.00,
                0,
            ),  # exactly 1 day before tx 3: outside the 1-day window
            (2, "2018-08-01 12:00:01", 7, 71, 20.00, 0),  # 1 day minus 1 second before: inside
            (3, "2018-08-02 12:00:00", 7, 72, 30.00, 0),
            (4, "2018-07-03 12:00:00", 7, 73, 1000.00, 0),  # exactly 30 days before tx 3: outside
            (5, "2018-08-02 06:59:59", 8, 70, 5.00, 0),  # another card: never counted for card 7
        ],
    )
    f = features(engine)[3]
    assert f["customer_id_nb_tx_1day_window"] == 2
    assert f["customer_id_avg_amount_1day_window"] == pytest.approx(25.0)
    assert f["customer_id_nb_tx_30day_window"] == 3
    assert f["customer_id_avg_amount_30day_window"] == pytest.approx(20.0)
    assert features(engine)[5]["tx_during_night"] == 1, "06:59:59 is night (hour <= 6)"
    assert features(engine)[1]["tx_during_night"] == 0


def test_same_second_transactions_count_up_to_themselves(engine: Engine) -> None:
    add_history(
        engine, [(10, "2018-08-02 12:00:00", 7, 70, 10.00, 0), (11, "2018-08-02 12:00:00", 7, 70, 30.00, 0)]
    )
    f = features(engine)
    assert f[10]["customer_id_nb_tx_1day_window"] == 1
    assert f[11]["customer_id_nb_tx_1day_window"] == 2
    assert f[11]["customer_id_avg_amount_1day_window"] == pytest.approx(20.0)


def test_terminal_windows_end_seven_days_back(engine: Engine) -> None:
    add_history(
        engine,
        [
            (1, "2018-08-01 12:00:00", 1, 9, 10, 1),  # exactly 8 days before tx 9: outside (t-8d, t-7d]
            (2, "2018-08-02 11:00:00", 2, 9, 10, 0),  # inside the 1-day window
            (3, "2018-08-02 12:00:00", 3, 9, 10, 1),  # exactly t - 7 days: inside (right-closed)
            (4, "2018-08-05 12:00:00", 4, 9, 10, 1),  # in the delay: not known, not counted
            (5, "2018-07-05 12:00:00", 5, 9, 10, 0),  # inside the 30-day window (t-37d, t-7d]
            (9, "2018-08-09 12:00:00", 6, 9, 10, 0),
        ],
    )
    f = features(engine)[9]
    assert f["terminal_id_nb_tx_1day_window"] == 2 and f["terminal_id_risk_1day_window"] == pytest.approx(0.5)
    assert f["terminal_id_nb_tx_7day_window"] == 3 and f["terminal_id_risk_7day_window"] == pytest.approx(
        2 / 3
    )
    assert f["terminal_id_nb_tx_30day_window"] == 4 and f["terminal_id_risk_30day_window"] == pytest.approx(
        0.5
    )
    assert f["terminal_id_last_known_label"] == 1, "tx 3 is the last transaction before the delay"
    assert f["terminal_id_days_since_last_fraud"] == pytest.approx(0.0)  # tx 3, at t - 7 days exactly
    assert f["terminal_id_days_since_first_fraud"] == pytest.approx(1.0)  # tx 1, a day before that
    # since its first known fraud (tx 1) the terminal saw tx 1, 2, 3: two frauds in three
    assert f["terminal_id_risk_since_first_fraud"] == pytest.approx(2 / 3)
    assert f["terminal_id_compromise_day"] == 8, "tx 1's day (08-01) to tx 9's day (08-09)"


def test_stream_labels_count_once_they_arrive(engine: Engine) -> None:
    add_history(engine, [(1, "2018-08-01 00:00:00", 1, 9, 10, 0)])
    compute_history_features(engine)
    add_stream(engine, [(100, "2018-08-02 10:00:00", 2, 9, 10.0)], refresh="2030-01-01 00:00:00")
    add_stream(engine, [(101, "2018-08-10 10:00:00", 3, 9, 10.0)], refresh="2030-01-01 00:00:00")
    # tx 101's 7-day terminal window (t - 14 days, t - 7 days] holds history tx 1 and stream tx 100
    before = features(engine, "source = 'stream'")[101]
    assert before["terminal_id_nb_tx_7day_window"] == 2 and before["terminal_id_risk_7day_window"] == 0
    add_label(engine, 100, 1)  # the chargeback arrives
    after = features(engine, "source = 'stream'")[101]
    assert after["terminal_id_nb_tx_7day_window"] == 2 and after["terminal_id_risk_7day_window"] == 0.5
    assert after["terminal_id_last_known_label"] == 1


def test_stream_duplicates_are_one_transaction(engine: Engine) -> None:
    add_stream(engine, [(100, "2018-08-02 10:00:00", 2, 9, 10.0), (100, "2018-08-02 10:00:00", 2, 9, 10.0)])
    add_stream(engine, [(101, "2018-08-02 11:00:00", 2, 9, 30.0)])
    f = features(engine, "source = 'stream'")
    assert sorted(f) == [100, 101]
    assert f[101]["customer_id_nb_tx_1day_window"] == 2
    assert f[101]["customer_id_avg_amount_1day_window"] == pytest.approx(20.0)


def test_a_stream_transaction_already_in_the_history_is_the_historys(engine: Engine) -> None:
    add_history(engine, [(1, "2018-08-02 09:00:00", 2, 9, 10.0, 1)])
    add_stream(engine, [(1, "2018-08-02 09:00:00", 2, 9, 10.0), (2, "2018-08-02 10:00:00", 2, 9, 30.0)])
    f = features(engine)
    assert sorted(f) == [1, 2] and f[1]["source"] == "history"  # not a stream target: never scored
    assert f[2]["customer_id_nb_tx_1day_window"] == 2  # counted once, not once per copy
    assert f[2]["customer_id_avg_amount_1day_window"] == pytest.approx(20.0)


def test_history_is_featurised_once(engine: Engine) -> None:
    add_history(engine, [(1, "2018-08-01 00:00:00", 1, 9, 10, 0), (2, "2018-08-02 00:00:00", 1, 9, 10, 0)])
    assert compute_history_features(engine) == 2
    assert compute_history_features(engine) == 0
    add_history(engine, [(3, "2018-08-03 00:00:00", 1, 9, 10, 0)])
    assert compute_history_features(engine) == 1
    assert engine.execute("SELECT count(*) FROM history_features").rows[0][0] == 3


def test_compromise_day_counts_calendar_days_not_seconds(engine: Engine) -> None:
    add_history(
        engine,
        [
            (1, "2018-07-20 10:00:00", 1, 9, 10, 0),  # known, genuine: before the first fraud
            (2, "2018-08-01 23:59:00", 2, 9, 10, 1),  # the first known fraud, late in its day
            (3, "2018-08-02 00:00:20", 3, 9, 10, 1),
            (9, "2018-08-09 00:00:30", 4, 9, 10, 0),  # 7 days and 90 s after tx 2, 8 calendar days
            (10, "2018-08-08 23:59:00", 5, 9, 10, 0),  # exactly 7 days after tx 2: tx 2 is known
            (11, "2018-08-08 23:58:59", 6, 9, 10, 0),  # one second earlier: tx 2 still in the delay
        ],
    )
    f = features(engine)
    assert f[9]["terminal_id_days_since_first_fraud"] == pytest.approx(90 / 86400)
    assert f[9]["terminal_id_compromise_day"] == 8
    assert f[10]["terminal_id_compromise_day"] == 7
    assert f[11]["terminal_id_compromise_day"] == -1, "tx 1 is known but genuine: no known fraud"


def test_quartic_mean_amount_of_the_last_14_days_over_the_baseline(engine: Engine) -> None:
    add_history(
        engine,
        [
            (1, "2018-07-12 12:00:00", 7, 70, 10.00, 0),  # baseline window (t - 30 d, t - 14 d]
            (2, "2018-07-27 12:00:00", 7, 70, 30.00, 0),  # exactly t - 14 d: baseline, not the 14 days
            (3, "2018-08-01 09:00:00", 7, 70, 20.00, 0),  # last 14 days
            (4, "2018-08-05 09:00:00", 7, 70, 100.00, 0),  # last 14 days: the spike
            (5, "2018-08-10 12:00:00", 7, 70, 50.00, 0),  # the transaction itself: not in its own measure
        ],
    )
    f = features(engine)[5]
    assert f["customer_id_avg_amount_baseline_window"] == pytest.approx(20.0)
    # ((20^4 + 100^4) / 2) ^ (1/4) / 20: the spike dominates
    assert f["customer_quartic_mean_amount_14day_to_baseline_ratio"] == pytest.approx(
        ((20**4 + 100**4) / 2) ** 0.25 / 20
    )


def test_quartic_mean_ratio_without_recent_transactions_or_without_baseline(engine: Engine) -> None:
    add_history(
        engine,
        [
            (1, "2018-07-15 12:00:00", 7, 70, 40.00, 0),  # card 7: baseline only
            (2, "2018-08-10 12:00:00", 7, 70, 60.00, 0),  # nothing else in its last 14 days
            (3, "2018-08-05 12:00:00", 8, 70, 10.00, 0),  # card 8: new, no baseline
            (4, "2018-08-10 12:00:00", 8, 70, 50.00, 0),
        ],
    )
    f = features(engine)
    assert f[2]["customer_id_nb_tx_baseline_window"] == 1
    assert f[2]["customer_quartic_mean_amount_14day_to_baseline_ratio"] == 0, (
        "no other transaction in 14 days"
    )
    # no baseline: the card's 30-day mean ((10 + 50) / 2) stands in, as for amount_to_baseline_ratio
    assert f[4]["customer_id_nb_tx_baseline_window"] == 0
    assert f[4]["customer_quartic_mean_amount_14day_to_baseline_ratio"] == pytest.approx(10 / 30)


def test_smallest_and_largest_known_fraud_amounts_at_the_terminal(engine: Engine) -> None:
    add_history(
        engine,
        [
            (1, "2018-07-01 12:00:00", 1, 9, 500.00, 1),  # exactly t - 37 d of tx 9: out of its window
            (2, "2018-07-01 12:00:01", 2, 9, 300.00, 1),  # (t - 37 d, t - 7 d] of tx 9: known
            (3, "2018-07-20 12:00:00", 3, 9, 25.50, 1),  # known
            (4, "2018-07-25 12:00:00", 4, 9, 5.00, 0),  # known but genuine: not a fraud amount
            (5, "2018-08-01 12:00:00", 5, 9, 1.00, 1),  # in the label delay (t - 7 d, t]: unknown
            (9, "2018-08-07 12:00:00", 6, 9, 40.00, 0),
        ],
    )
    f = features(engine)[9]
    assert f["terminal_id_min_fraud_amount_30day_window"] == pytest.approx(25.5)
    assert f["terminal_id_max_fraud_amount_30day_window"] == pytest.approx(300.0)
