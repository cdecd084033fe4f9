"""Vectorised card-transaction simulator (the Fraud Detection Handbook's published algorithm).

Public interface:

    config = WorldConfig(n_customers=5000, n_terminals=10000, n_days=183, seed=42)
    world, history = simulate_history(config)          # history: Transactions (columnar numpy)
    live = LiveSimulator(world, after=history)         # the SAME world, continued
    for tx in live: ...                                # LiveTransaction, event-time order, forever
    rows = customer_info(world, seed=42)               # Faker profiles, one dict per customer

The world (customer profiles, terminals, neighbourhoods) is drawn once from the seed. Every simulated
day draws from its own generator keyed by (seed, day), so day d is the same whether it comes from a
history or from a live continuation: `simulate_history(n_days=10)` followed by 5 live days equals
`simulate_history(n_days=15)`, ids included.

Algorithm (per day, vectorised over customers):
- each customer makes Poisson(mean_nb_tx_per_day) transactions; time of day ~ N(43200, 20000) s,
  truncated to whole seconds, draws outside (0, 86400) dropped; amount ~ N(mean, mean/2), a negative
  draw replaced by U(0, 2*mean), rounded to cents; terminal uniform among those closer than `radius`.
- frauds, in this order: (1) amount > 220; (2) each day 2 random terminals are compromised for 28 days
  (from that day on), all their transactions are frauds; (3) each day 3 random customers are
  compromised for 14 days, each of their transactions in that window is, with probability 1/3, a fraud
  with its amount multiplied by 5. Scenario 3 is decided per transaction (not an exact third per window
  as in the handbook) so that a live day can be labelled the moment it is generated.
Compromises are a pure function of (seed, day), so the compromises still open at the end of a history
carry on into the live continuation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

SECONDS_PER_DAY = 86_400
FRAUD_AMOUNT_THRESHOLD = 220.0
TERMINALS_COMPROMISED_PER_DAY = 2
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMERS_COMPROMISED_PER_DAY = 3
CUSTOMER_COMPROMISE_DAYS = 14
CUSTOMER_FRAUD_SHARE = 1 / 3
CUSTOMER_FRAUD_AMOUNT_FACTOR = 5

# Independent random streams derived from the seed.
_PROFILE_STREAM = 0
_DAY_STREAM = 1
_COMPROMISE_STREAM = 2

COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)


@dataclass(frozen=True)
class WorldConfig:
    """Size and seed of a simulated world; the defaults are the handbook's data set."""

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    start_date: dt.date = dt.date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 42

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):
            object.__setattr__(self, "start_date", dt.date.fromisoformat(self.start_date))
        problems = []
        if self.n_customers < CUSTOMERS_COMPROMISED_PER_DAY:
            problems.append(f"n_customers must be >= {CUSTOMERS_COMPROMISED_PER_DAY}")
        if self.n_terminals < TERMINALS_COMPROMISED_PER_DAY:
            problems.append(f"n_terminals must be >= {TERMINALS_COMPROMISED_PER_DAY}")
        if self.n_days < 0:
            problems.append("n_days must be >= 0")
        if not self.radius > 0:
            problems.append("radius must be > 0")
        if self.seed < 0:
            problems.append("seed must be >= 0")
        if problems:
            raise ValueError("invalid WorldConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class Transactions:
    """Columnar transactions (numpy arrays, one per article column), sorted by event time."""

    TRANSACTION_ID: np.ndarray  # int64, sequential
    TX_DATETIME: np.ndarray  # datetime64[s], simulated event time
    CUSTOMER_ID: np.ndarray  # int64
    TERMINAL_ID: np.ndarray  # int64
    TX_AMOUNT: np.ndarray  # float64, cents
    TX_TIME_SECONDS: np.ndarray  # int64, seconds since start_date 00:00
    TX_TIME_DAYS: np.ndarray  # int64, days since start_date
    TX_FRAUD: np.ndarray  # int8, 0/1
    TX_FRAUD_SCENARIO: np.ndarray  # int8, 0 = genuine, 1..3 = fraud scenario

    def __len__(self) -> int:
        return len(self.TRANSACTION_ID)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by article name, in the article's order."""
        return {name: getattr(self, name) for name in COLUMNS}

    def take(self, selector: np.ndarray | slice) -> Transactions:
        """The rows picked by a boolean mask, an index array or a slice."""
        return Transactions(**{name: column[selector] for name, column in self.columns().items()})

    @classmethod
    def concat(cls, parts: Sequence[Transactions]) -> Transactions:
        """Rows of several Transactions, one after the other."""
        if not parts:
            return cls.empty()
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in COLUMNS})

    @classmethod
    def empty(cls) -> Transactions:
        return cls(
            **{
                f.name: np.empty(0, dtype=_DTYPES[f.name])
                for f in fields(cls)  # dataclass fields are exactly COLUMNS
            }
        )

    def to_pandas(self) -> Any:
        """A pandas DataFrame with the article's columns (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def datetime_strings(self) -> np.ndarray:
        """TX_DATETIME as "YYYY-MM-DD HH:MM:SS" strings (the stream and CSV format)."""
        return np.char.replace(np.datetime_as_string(self.TX_DATETIME, unit="s"), "T", " ")

    def rows(self) -> Iterator[LiveTransaction]:
        """One LiveTransaction (plain Python values) per row."""
        for values in zip(
            self.TRANSACTION_ID.tolist(),
            self.datetime_strings().tolist(),
            self.CUSTOMER_ID.tolist(),
            self.TERMINAL_ID.tolist(),
            self.TX_AMOUNT.tolist(),
            self.TX_TIME_SECONDS.tolist(),
            self.TX_TIME_DAYS.tolist(),
            self.TX_FRAUD.tolist(),
            self.TX_FRAUD_SCENARIO.tolist(),
            strict=True,
        ):
            yield LiveTransaction(*values)


_DTYPES = {
    "TRANSACTION_ID": np.int64,
    "TX_DATETIME": "datetime64[s]",
    "CUSTOMER_ID": np.int64,
    "TERMINAL_ID": np.int64,
    "TX_AMOUNT": np.float64,
    "TX_TIME_SECONDS": np.int64,
    "TX_TIME_DAYS": np.int64,
    "TX_FRAUD": np.int8,
    "TX_FRAUD_SCENARIO": np.int8,
}


class LiveTransaction(NamedTuple):
    """One transaction as plain Python values, with its ground-truth label."""

    TRANSACTION_ID: int
    TX_DATETIME: str
    CUSTOMER_ID: int
    TERMINAL_ID: int
    TX_AMOUNT: float
    TX_TIME_SECONDS: int
    TX_TIME_DAYS: int
    TX_FRAUD: int
    TX_FRAUD_SCENARIO: int


@dataclass(frozen=True, eq=False)
class World:
    """Customers, terminals and who may use which terminal. Built by `build_world(config)`.

    Customer i has id i and terminal j has id j. The terminals customer i uses are
    `neighbour_terminals[neighbour_offsets[i]:neighbour_offsets[i + 1]]` (see `available_terminals`).
    Compromises are not stored: they are a pure function of (seed, day), see `compromises_opened`
    and `compromised_terminals` / `compromised_customers` for those open on a day.
    """

    config: WorldConfig
    customer_xy: np.ndarray  # (n_customers, 2)
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_nb_tx_per_day: np.ndarray
    terminal_xy: np.ndarray  # (n_terminals, 2)
    neighbour_offsets: np.ndarray  # (n_customers + 1,) int64
    neighbour_terminals: np.ndarray  # int64, terminal ids grouped by customer
    _compromise_cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def n_available_terminals(self) -> np.ndarray:
        return np.diff(self.neighbour_offsets)

    def available_terminals(self, customer_id: int) -> np.ndarray:
        """Terminal ids within `radius` of the customer (may be empty)."""
        return self.neighbour_terminals[
            self.neighbour_offsets[customer_id] : self.neighbour_offsets[customer_id + 1]
        ]

    def compromises_opened(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """(terminal ids, customer ids) compromised on `day`; deterministic in (seed, day)."""
        if day < 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cached = self._compromise_cache.get(day)
        if cached is None:
            rng = np.random.default_rng([self.config.seed, _COMPROMISE_STREAM, day])
            terminals = rng.choice(self.config.n_terminals, TERMINALS_COMPROMISED_PER_DAY, replace=False)
            customers = rng.choice(self.config.n_customers, CUSTOMERS_COMPROMISED_PER_DAY, replace=False)
            cached = (terminals.astype(np.int64), customers.astype(np.int64))
            self._compromise_cache[day] = cached
        return cached

    def compromised_terminals(self, day: int) -> np.ndarray:
        """Terminal ids whose compromise window [opened, opened + 28 days) contains `day`."""
        opened = range(day - TERMINAL_COMPROMISE_DAYS + 1, day + 1)
        return np.unique(np.concatenate([self.compromises_opened(d)[0] for d in opened]))

    def compromised_customers(self, day: int) -> np.ndarray:
        """Customer ids whose compromise window [opened, opened + 14 days) contains `day`."""
        opened = range(day - CUSTOMER_COMPROMISE_DAYS + 1, day + 1)
        return np.unique(np.concatenate([self.compromises_opened(d)[1] for d in opened]))

    def day_datetime(self, day: int) -> np.datetime64:
        """Midnight of simulated `day` as numpy datetime64[s]."""
        return np.datetime64(self.config.start_date, "s") + np.timedelta64(day * SECONDS_PER_DAY, "s")


def build_world(config: WorldConfig) -> World:
    """Draw customer profiles and terminals and find each customer's terminals within the radius."""
    rng = np.random.default_rng([config.seed, _PROFILE_STREAM])
    customer_xy = rng.uniform(0, 100, size=(config.n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=config.n_customers)
    mean_nb_tx_per_day = rng.uniform(0, 4, size=config.n_customers)
    terminal_xy = rng.uniform(0, 100, size=(config.n_terminals, 2))
    offsets, terminals = _neighbourhoods(customer_xy, terminal_xy, config.radius)
    return World(
        config=config,
        customer_xy=customer_xy,
        mean_amount=mean_amount,
        std_amount=mean_amount / 2,
        mean_nb_tx_per_day=mean_nb_tx_per_day,
        terminal_xy=terminal_xy,
        neighbour_offsets=offsets,
        neighbour_terminals=terminals,
    )


def _neighbourhoods(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of the terminals strictly closer than `radius` to each customer, terminals ascending.

    Customers are taken in blocks of neighbours along x, and each block is compared only with the
    terminals whose x lies within `radius` of the block's x range (about 7x fewer distances at r=5);
    memory stays bounded by one block's distance matrix.
    """
    terminal_x = terminal_xy[:, 0]
    blocks = []  # (customer ids, row of each pair, terminal id of each pair); terminals ascending per row
    customers_by_x = np.argsort(customer_xy[:, 0], kind="stable")
    for start in range(0, len(customers_by_x), chunk):
        block = customers_by_x[start : start + chunk]
        xy = customer_xy[block]
        band = np.nonzero((terminal_x > xy[:, 0].min() - radius) & (terminal_x < xy[:, 0].max() + radius))[0]
        d2 = (xy[:, None, 0] - terminal_xy[band, 0]) ** 2 + (xy[:, None, 1] - terminal_xy[band, 1]) ** 2
        rows, cols = np.nonzero(d2 < radius * radius)  # row-major, so terminal ids ascend within a row
        blocks.append((block, rows, band[cols]))

    counts = np.zeros(len(customer_xy), dtype=np.int64)
    for block, rows, _ in blocks:
        counts[block] = np.bincount(rows, minlength=len(block))
    offsets = np.zeros(len(customer_xy) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    terminals = np.empty(offsets[-1], dtype=np.int64)
    for block, rows, block_terminals in blocks:  # scatter each row's run to its customer's slot
        row_start = np.cumsum(counts[block]) - counts[block]
        terminals[offsets[block[rows]] + np.arange(len(rows)) - row_start[rows]] = block_terminals
    return offsets, terminals


def simulate_day(world: World, day: int, first_transaction_id: int) -> Transactions:
    """All transactions of simulated `day`, labelled, sorted by time, ids from `first_transaction_id`."""
    if day < 0:
        raise ValueError(f"day must be >= 0, got {day}")
    rng = np.random.default_rng([world.config.seed, _DAY_STREAM, day])
    n_customers = world.config.n_customers

    nb_tx = rng.poisson(world.mean_nb_tx_per_day)
    customer = np.repeat(np.arange(n_customers, dtype=np.int64), nb_tx)
    time_of_day = rng.normal(SECONDS_PER_DAY / 2, 20_000, size=len(customer)).astype(np.int64)  # truncates
    n_available = world.n_available_terminals[customer]
    keep = (time_of_day > 0) & (time_of_day < SECONDS_PER_DAY) & (n_available > 0)
    customer, time_of_day, n_available = customer[keep], time_of_day[keep], n_available[keep]

    mean = world.mean_amount[customer]
    amount = rng.normal(mean, world.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)
    pick = (rng.random(len(customer)) * n_available).astype(np.int64)
    terminal = world.neighbour_terminals[world.neighbour_offsets[customer] + pick]
    customer_draw = rng.random(len(customer))  # used by scenario 3

    order = np.lexsort((customer, time_of_day))  # by time, ties by customer; stable otherwise
    customer, time_of_day, amount = customer[order], time_of_day[order], amount[order]
    terminal, customer_draw = terminal[order], customer_draw[order]

    scenario = np.zeros(len(customer), dtype=np.int8)
    scenario[amount > FRAUD_AMOUNT_THRESHOLD] = 1
    scenario[np.isin(terminal, world.compromised_terminals(day))] = 2
    stolen = np.isin(customer, world.compromised_customers(day)) & (customer_draw < CUSTOMER_FRAUD_SHARE)
    amount[stolen] = np.round(amount[stolen] * CUSTOMER_FRAUD_AMOUNT_FACTOR, 2)
    scenario[stolen] = 3

    seconds = time_of_day + day * SECONDS_PER_DAY
    n = len(customer)
    return Transactions(
        TRANSACTION_ID=np.arange(first_transaction_id, first_transaction_id + n, dtype=np.int64),
        TX_DATETIME=np.datetime64(world.config.start_date, "s") + seconds.astype("timedelta64[s]"),
        CUSTOMER_ID=customer,
        TERMINAL_ID=terminal,
        TX_AMOUNT=amount,
        TX_TIME_SECONDS=seconds,
        TX_TIME_DAYS=np.full(n, day, dtype=np.int64),
        TX_FRAUD=(scenario > 0).astype(np.int8),
        TX_FRAUD_SCENARIO=scenario,
    )


def simulate_days(world: World, first_day: int, n_days: int, first_transaction_id: int) -> Transactions:
    """Days [first_day, first_day + n_days) one after the other, ids continuing across days."""
    parts, next_id = [], first_transaction_id
    for day in range(first_day, first_day + n_days):
        part = simulate_day(world, day, next_id)
        next_id += len(part)
        parts.append(part)
    return Transactions.concat(parts)


def simulate_history(config: WorldConfig) -> tuple[World, Transactions]:
    """Build the world and simulate days [0, config.n_days); transaction ids start at 0."""
    world = build_world(config)
    return world, simulate_days(world, 0, config.n_days, 0)


class LiveSimulator:
    """The same world continued past a history, one simulated day at a time, in event-time order.

    `LiveSimulator(world, after=history)` starts at day `world.config.n_days` with the id after the
    history's last one. Without a history, give `first_transaction_id` (and optionally `start_day`).
    Iterating yields LiveTransaction records (with their labels) forever; `next_day()` returns the
    next whole day as Transactions instead. Both advance the same cursor.
    """

    def __init__(
        self,
        world: World,
        after: Transactions | None = None,
        *,
        start_day: int | None = None,
        first_transaction_id: int | None = None,
    ) -> None:
        self.world = world
        self.day = world.config.n_days if start_day is None else start_day
        if self.day < 0:
            raise ValueError(f"start_day must be >= 0, got {self.day}")
        if first_transaction_id is None:
            if after is None:
                raise ValueError("give the history (after=) or first_transaction_id")
            first_transaction_id = int(after.TRANSACTION_ID.max()) + 1 if len(after) else 0
        if after is not None and len(after):
            if int(after.TX_TIME_DAYS.max()) >= self.day:
                raise ValueError(
                    f"the history reaches day {int(after.TX_TIME_DAYS.max())}; live mode must start after it "
                    f"(start_day={self.day})"
                )
            if first_transaction_id <= int(after.TRANSACTION_ID.max()):
                raise ValueError("first_transaction_id must be greater than every id of the history")
        self.next_transaction_id = first_transaction_id

    def next_day(self) -> Transactions:
        """Simulate the next day and advance the cursor."""
        day = simulate_day(self.world, self.day, self.next_transaction_id)
        self.day += 1
        self.next_transaction_id += len(day)
        return day

    def __iter__(self) -> Iterator[LiveTransaction]:
        while True:
            yield from self.next_day().rows()


def customer_info(world: World, seed: int | None = None) -> list[dict[str, Any]]:
    """Faker profiles for every customer, keyed like the article's customer_info table.

    Deterministic in `seed` (default: the world's seed). Values fit the DDL's varchar sizes
    (phone numbers use a fixed 15-character format; the table allows 20).
    """
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(world.config.seed if seed is None else seed)
    return [
        {
            "customer_id": customer_id,
            "job_title": fake.job()[:500],
            "email_address": fake.email()[:100],
            "full_name": fake.name()[:200],
            "phone_number": fake.numerify("+1-###-###-####"),
            "city": fake.city()[:50],
            "state": fake.state()[:50],
        }
        for customer_id in range(world.config.n_customers)
    ]


CUSTOMER_INFO_COLUMNS = (
    "customer_id",
    "job_title",
    "email_address",
    "full_name",
    "phone_number",
    "city",
    "state",
)
