"""The simulator against the handbook's algorithm, its published statistics and its oracle data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from producer.simulator import (
    CUSTOMER_COMPROMISE_DAYS,
    TERMINAL_COMPROMISE_DAYS,
    LiveSimulator,
    LiveTransaction,
    Transactions,
    World,
    WorldConfig,
    customer_info,
    simulate_history,
)
from tests.conftest import SHARED

pytestmark = pytest.mark.unit

HANDBOOK_TRANSACTIONS = 1_754_155  # the handbook's data set at the default settings
HANDBOOK_FRAUDS = 14_681
ORACLE = SHARED / "data" / "handbook_raw_2018-07-01_2018-08-14.csv.gz"


@pytest.fixture(scope="session")
def default_world() -> tuple[World, Transactions]:
    """The default world (183 days, ~1.75M transactions), generated once per session."""
    return simulate_history(WorldConfig(seed=7))


@pytest.fixture(scope="session")
def small_config() -> WorldConfig:
    return WorldConfig(n_customers=300, n_terminals=600, n_days=20, seed=3)


def _open_windows(world: World, n_days: int, window: int, which: int) -> set[tuple[int, int]]:
    """(id, day) pairs inside a compromise window, rebuilt from the per-day compromise events."""
    pairs = set()
    for opened in range(n_days):
        for entity in world.compromises_opened(opened)[which].tolist():
            pairs.update((entity, day) for day in range(opened, min(opened + window, n_days)))
    return pairs


# --- volumes and rates at the handbook's defaults ---------------------------------------------------


def test_default_world_matches_the_handbook_volumes(default_world):
    _, history = default_world
    assert abs(len(history) - HANDBOOK_TRANSACTIONS) / HANDBOOK_TRANSACTIONS < 0.05
    frauds = int(history.TX_FRAUD.sum())
    assert abs(frauds - HANDBOOK_FRAUDS) / HANDBOOK_FRAUDS < 0.15
    assert 0.0070 < frauds / len(history) < 0.0100  # handbook: 0.84%
    per_day = np.bincount(history.TX_TIME_DAYS)
    assert len(per_day) == 183
    assert 9_100 < per_day.mean() < 10_100  # handbook: about 9,600
    assert per_day.min() > 8_500


def test_daily_frauds_and_scenario_shares_match_the_oracle_data(default_world):
    """Steady state (compromise windows full) against the handbook's own data for the same dates."""
    pd = pytest.importorskip("pandas")
    _, history = default_world
    oracle = pd.read_csv(ORACLE, usecols=["TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO", "TX_AMOUNT"])
    days = sorted(oracle.TX_TIME_DAYS.unique())
    ours = history.to_pandas()
    ours = ours[ours.TX_TIME_DAYS.between(days[0], days[-1])]

    def summary(df) -> dict[str, float]:
        frauds = df[df.TX_FRAUD == 1]
        shares = frauds.TX_FRAUD_SCENARIO.value_counts(normalize=True)
        return {
            "tx_per_day": len(df) / len(days),
            "frauds_per_day": len(frauds) / len(days),
            "share_1": shares.get(1, 0.0),
            "share_2": shares.get(2, 0.0),
            "share_3": shares.get(3, 0.0),
            "mean_amount": df.TX_AMOUNT.mean(),
        }

    got, want = summary(ours), summary(oracle)
    assert got["tx_per_day"] == pytest.approx(want["tx_per_day"], rel=0.05)
    assert got["frauds_per_day"] == pytest.approx(want["frauds_per_day"], rel=0.20)  # oracle: ~85
    for scenario in (1, 2, 3):  # oracle: 6% / 62% / 32%
        assert got[f"share_{scenario}"] == pytest.approx(want[f"share_{scenario}"], abs=0.08)
    assert got["mean_amount"] == pytest.approx(want["mean_amount"], rel=0.10)


# --- the algorithm's rules hold on the output -------------------------------------------------------


def test_ids_times_and_amounts_follow_the_rules(default_world):
    _, history = default_world
    assert np.array_equal(history.TRANSACTION_ID, np.arange(len(history)))
    assert np.all(np.diff(history.TX_TIME_SECONDS) >= 0)
    time_of_day = history.TX_TIME_SECONDS - history.TX_TIME_DAYS * 86_400
    assert time_of_day.min() > 0 and time_of_day.max() < 86_400
    start = np.datetime64(dt.datetime(2018, 4, 1), "s")
    assert np.array_equal(history.TX_DATETIME, start + history.TX_TIME_SECONDS.astype("timedelta64[s]"))
    assert history.TX_AMOUNT.min() >= 0
    assert np.allclose(np.round(history.TX_AMOUNT * 100), history.TX_AMOUNT * 100, atol=1e-6)
    assert np.array_equal(history.TX_FRAUD, (history.TX_FRAUD_SCENARIO > 0).astype(np.int8))


def test_customers_use_only_terminals_within_the_radius(default_world):
    world, history = default_world
    delta = world.customer_xy[history.CUSTOMER_ID] - world.terminal_xy[history.TERMINAL_ID]
    assert np.sqrt((delta**2).sum(axis=1)).max() < world.config.radius
    # and the neighbourhood lists are exactly the terminals within the radius (spot check)
    for customer in (0, 1234, 4999):
        distance = np.sqrt(((world.terminal_xy - world.customer_xy[customer]) ** 2).sum(axis=1))
        assert np.array_equal(world.available_terminals(customer), np.nonzero(distance < 5)[0])


def test_scenario_1_every_transaction_above_220_is_fraud(default_world):
    _, history = default_world
    assert np.all(history.TX_FRAUD[history.TX_AMOUNT > 220] == 1)
    assert np.all(history.TX_AMOUNT[history.TX_FRAUD_SCENARIO == 1] > 220)
    assert np.all(history.TX_AMOUNT[history.TX_FRAUD == 0] <= 220)


def test_scenario_2_compromised_terminals_are_all_fraud_in_their_window(default_world):
    world, history = default_world
    n_days = world.config.n_days
    for day in range(n_days):
        opened_terminals, opened_customers = world.compromises_opened(day)
        assert len(set(opened_terminals.tolist())) == 2 and len(set(opened_customers.tolist())) == 3
    windows = _open_windows(world, n_days, TERMINAL_COMPROMISE_DAYS, which=0)
    in_window = np.array(
        [
            (t, d) in windows
            for t, d in zip(history.TERMINAL_ID.tolist(), history.TX_TIME_DAYS.tolist(), strict=True)
        ]
    )
    assert in_window.sum() > 5_000
    assert np.all(history.TX_FRAUD[in_window] == 1)
    assert np.all(np.isin(history.TX_FRAUD_SCENARIO[in_window], (2, 3)))  # 3 may override 2
    assert not np.any(history.TX_FRAUD_SCENARIO[~in_window] == 2)


def test_scenario_3_about_a_third_of_compromised_customer_transactions_are_x5_frauds(default_world):
    world, history = default_world
    windows = _open_windows(world, world.config.n_days, CUSTOMER_COMPROMISE_DAYS, which=1)
    in_window = np.array(
        [
            (c, d) in windows
            for c, d in zip(history.CUSTOMER_ID.tolist(), history.TX_TIME_DAYS.tolist(), strict=True)
        ]
    )
    scenario_3 = history.TX_FRAUD_SCENARIO == 3
    assert not np.any(scenario_3 & ~in_window)
    assert 0.29 < scenario_3[in_window].mean() < 0.38
    # x5: the amounts are about five times the customer's usual mean amount
    ratio = history.TX_AMOUNT[scenario_3] / world.mean_amount[history.CUSTOMER_ID[scenario_3]]
    usual = history.TX_AMOUNT[~scenario_3] / world.mean_amount[history.CUSTOMER_ID[~scenario_3]]
    assert 4.5 < ratio.mean() < 5.5
    assert 0.9 < usual.mean() < 1.1


def test_daily_volume_and_time_of_day_distribution(default_world):
    _, history = default_world
    time_of_day = history.TX_TIME_SECONDS % 86_400
    assert time_of_day.mean() == pytest.approx(43_200, abs=300)
    assert 17_500 < time_of_day.std() < 20_000  # N(43200, 20000) truncated to (0, 86400)


# --- determinism and live continuation --------------------------------------------------------------


def _assert_same(a: Transactions, b: Transactions) -> None:
    for name, column in a.columns().items():
        assert np.array_equal(column, getattr(b, name)), name


def test_same_seed_same_world_and_different_seed_different_world(small_config):
    world_a, a = simulate_history(small_config)
    world_b, b = simulate_history(small_config)
    _assert_same(a, b)
    assert np.array_equal(world_a.customer_xy, world_b.customer_xy)
    _, c = simulate_history(WorldConfig(**{**small_config.__dict__, "seed": small_config.seed + 1}))
    assert len(c) != len(a) or not np.array_equal(c.TX_AMOUNT, a.TX_AMOUNT)


def test_live_days_equal_a_longer_history(small_config):
    """Live continues the SAME world: history(20) + 10 live days == history(30), ids and labels included."""
    world, history = simulate_history(small_config)
    live = LiveSimulator(world, after=history)
    continued = Transactions.concat([history] + [live.next_day() for _ in range(10)])
    _, longer = simulate_history(WorldConfig(**{**small_config.__dict__, "n_days": 30}))
    _assert_same(continued, longer)
    assert live.day == 30 and live.next_transaction_id == len(longer)


def test_live_iteration_continues_ids_and_time_without_gap_or_overlap(small_config):
    world, history = simulate_history(small_config)
    live = LiveSimulator(world, after=history)
    produced = [tx for _, tx in zip(range(800), live, strict=False)]
    assert all(isinstance(tx, LiveTransaction) for tx in produced)
    ids = [tx.TRANSACTION_ID for tx in produced]
    assert ids == list(range(len(history), len(history) + 800))
    seconds = [tx.TX_TIME_SECONDS for tx in produced]
    assert seconds == sorted(seconds)
    assert seconds[0] > int(history.TX_TIME_SECONDS.max()) - 1
    assert small_config.n_days == produced[0].TX_TIME_DAYS
    assert produced[0].TX_DATETIME.startswith("2018-04-21 ")
    # compromises opened during the history are still open in the live days
    still_open = world.compromised_terminals(small_config.n_days)
    assert set(world.compromises_opened(small_config.n_days - 1)[0].tolist()) <= set(still_open.tolist())


def test_live_simulator_rejects_overlap_and_missing_start(small_config):
    world, history = simulate_history(small_config)
    with pytest.raises(ValueError, match="must start after"):
        LiveSimulator(world, after=history, start_day=small_config.n_days - 1)
    with pytest.raises(ValueError, match="first_transaction_id"):
        LiveSimulator(world)
    with pytest.raises(ValueError, match="greater than every id"):
        LiveSimulator(world, after=history, first_transaction_id=5)
    live = LiveSimulator(world, start_day=0, first_transaction_id=0)
    _assert_same(live.next_day(), history.take(history.TX_TIME_DAYS == 0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_customers": 1}, "n_customers"),
        ({"n_terminals": 0}, "n_terminals"),
        ({"n_days": -1}, "n_days"),
        ({"radius": 0}, "radius"),
        ({"seed": -5}, "seed"),
    ],
)
def test_invalid_world_config_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**overrides)


def test_start_date_accepts_iso_strings():
    assert WorldConfig(start_date="2020-01-31").start_date == dt.date(2020, 1, 31)


# --- customer_info ----------------------------------------------------------------------------------


def test_customer_info_is_deterministic_and_fits_the_ddl(small_config):
    world, _ = simulate_history(small_config)
    rows = customer_info(world, seed=11)
    assert rows == customer_info(world, seed=11)
    assert rows != customer_info(world, seed=12)
    assert [row["customer_id"] for row in rows] == list(range(small_config.n_customers))
    limits = {
        "job_title": 500,
        "email_address": 100,
        "full_name": 200,
        "phone_number": 20,
        "city": 50,
        "state": 50,
    }
    for row in rows:
        for column, limit in limits.items():
            assert 0 < len(row[column]) <= limit, (column, row[column])
        assert "@" in row["email_address"]


def test_an_empty_history_continues_from_day_zero():
    config = WorldConfig(n_customers=50, n_terminals=100, n_days=0, seed=1)
    world, history = simulate_history(config)
    assert len(history) == 0 and history.TX_DATETIME.dtype == np.dtype("datetime64[s]")
    live = LiveSimulator(world, after=history)
    first = next(iter(live))
    assert first.TRANSACTION_ID == 0 and first.TX_TIME_DAYS == 0
