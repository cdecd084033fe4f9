"""`python -m local evaluate`: the Fraud Detection Handbook's evaluation protocols, through the product.

Features come from THE SQL definition (`tx_features`, via `python -m local features`' code path) and
every model is trained by `CREATE MODEL ... MODEL_TYPE XGBOOST OBJECTIVE 'reg:logistic'` on the local
engine and scored through its SQL function, so this measures the product, not a notebook.

Protocols (the handbook's, chapters 3 and 5):
- `ch3`: one split. Train 7 days from 2018-07-25, a 7-day delay, test the next 7 days.
- `ch5`: prequential, 4 folds: the ch3 split moved back by 7 days per fold, from 2018-08-15 (the
  handbook's test estimate); metrics are averaged over the folds.
Test sets follow the handbook: a card that had a known fraud (in the training period, or in the
delay period up to the day before each test day) is dropped from that test day.
Metrics: AUC ROC, Average Precision, Card Precision@100 (per day, the 100 cards with the highest
score among cards not already detected on an earlier test day; mean over days).
The training window and the hyperparameters are the product's: the window of the WHERE clause
(`DATEADD(day, -N, ...)`) and the HYPERPARAMETERS clause of sql/queries/create_model.sql (all inputs)
or create_model_handbook.sql (the handbook's 15), so a change there is what gets measured;
`--train-days` overrides the window (the book trains on 7).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from local.features import (
    EXTRA_FEATURES,
    HANDBOOK_FEATURES,
    HistoryFileError,
    compute_history_features,
    load_history,
    prepare_history_warehouse,
)
from local.redshift.engine import Engine, RedshiftError

# Published by the handbook (Chapter 5, best models on its test protocol), as quoted in issue 5.
PUBLISHED = {"ch5": {"auc_roc": 0.879, "average_precision": 0.687, "card_precision_100": 0.305}}
PROTOCOLS = {
    # first training day of the latest fold, number of folds
    "ch3": (dt.date(2018, 7, 25), 1),
    "ch5": (dt.date(2018, 8, 15), 4),
}
DELTA = 7  # days of training (handbook), delay and test
MODEL_INPUTS = {
    "handbook": ("TX_AMOUNT", *HANDBOOK_FEATURES),
    "all": ("TX_AMOUNT", *HANDBOOK_FEATURES, *EXTRA_FEATURES),
}
# The product's CREATE MODEL query for each input set (sql/queries/<name>.sql).
PRODUCT_MODEL_QUERY = {"handbook": "create_model_handbook", "all": "create_model"}
_HYPERPARAMETERS = re.compile(r"HYPERPARAMETERS\s+DEFAULT(?:\s+EXCEPT\s*\([^)]*\))?", re.IGNORECASE)
_TRAINING_WINDOW = re.compile(r"DATEADD\(\s*day\s*,\s*-(\d+)\s*,", re.IGNORECASE)


class EvaluationError(RuntimeError):
    """A fold cannot be evaluated (no data for its dates, a model that failed)."""


@dataclass(frozen=True)
class Fold:
    train_start: dt.date  # first day of the handbook's 7-day training period
    train_days: int  # the product's training window, ending where the handbook's ends

    @property
    def train_end(self) -> dt.date:  # exclusive
        return self.train_start + dt.timedelta(days=DELTA)

    @property
    def train_from(self) -> dt.date:
        return self.train_end - dt.timedelta(days=self.train_days)

    @property
    def test_start(self) -> dt.date:
        return self.train_end + dt.timedelta(days=DELTA)

    @property
    def test_end(self) -> dt.date:  # exclusive
        return self.test_start + dt.timedelta(days=DELTA)


def folds(protocol: str, train_days: int = DELTA) -> list[Fold]:
    latest, n_folds = PROTOCOLS[protocol]
    return [Fold(latest - dt.timedelta(days=DELTA * k), train_days) for k in range(n_folds)]


def handbook_test_set(transactions: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    """The handbook's test set: each test day without the cards with a fraud known by then.

    `transactions` has TX_DATETIME (datetime64), CUSTOMER_ID, TX_FRAUD. Known compromised cards: a
    fraud in the (handbook's 7-day) training period, or in the delay period up to the day before
    the test day minus the delay (the handbook's rule: day d of the test adds the frauds of day
    train_end + d - 1)."""
    day = transactions["TX_DATETIME"].dt.floor("D")
    train = transactions[(day >= pd.Timestamp(fold.train_start)) & (day < pd.Timestamp(fold.train_end))]
    known = set(train.loc[train["TX_FRAUD"] == 1, "CUSTOMER_ID"])
    parts = []
    for d in range(DELTA):
        test_day = pd.Timestamp(fold.test_start + dt.timedelta(days=d))
        delay_day = pd.Timestamp(fold.train_end + dt.timedelta(days=d - 1))
        delay = transactions[day == delay_day]
        known |= set(delay.loc[delay["TX_FRAUD"] == 1, "CUSTOMER_ID"])
        today = transactions[day == test_day]
        parts.append(today[~today["CUSTOMER_ID"].isin(known)])
    return pd.concat(parts) if parts else transactions.iloc[:0]


def daily_cards(scored: pd.DataFrame, k: int = 100) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """Each day's cards as card precision@k ranks them, cards detected on an earlier day removed.

    `scored` has TX_DATETIME, CUSTOMER_ID, TX_FRAUD and `score`. Yields (day, cards): one row per card
    (index CUSTOMER_ID) with `score` (its highest transaction score that day), `fraud` (1 when any of
    its transactions that day is a fraud) and `top` (among the day's k highest), highest score first."""
    day = scored["TX_DATETIME"].dt.floor("D")
    detected: set = set()
    for today_date, today in scored.groupby(day, sort=True):
        today = today[~today["CUSTOMER_ID"].isin(detected)]
        cards = today.groupby("CUSTOMER_ID").agg(score=("score", "max"), fraud=("TX_FRAUD", "max"))
        cards = cards.sort_values("score", ascending=False, kind="stable")
        cards["top"] = np.arange(len(cards)) < k
        yield today_date, cards
        detected |= set(cards.index[cards["top"] & (cards["fraud"] == 1)])


def card_precision_at_k(scored: pd.DataFrame, k: int = 100) -> float:
    """Daily card precision@k (true positives among the day's k top cards, over k); the mean over days."""
    precisions = [
        int((cards["top"] & (cards["fraud"] == 1)).sum()) / k for _, cards in daily_cards(scored, k)
    ]
    return float(np.mean(precisions)) if precisions else float("nan")


def metrics(scored: pd.DataFrame, k: int = 100) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "auc_roc": float(roc_auc_score(scored["TX_FRAUD"], scored["score"])),
        "average_precision": float(average_precision_score(scored["TX_FRAUD"], scored["score"])),
        "card_precision_100": card_precision_at_k(scored, k),
    }


def product_hyperparameters(features: str, sql_directory: Path | None = None) -> str:
    """The HYPERPARAMETERS clause of the product's CREATE MODEL for an input set ("handbook" or "all")."""
    clause = _one_match(_HYPERPARAMETERS, "HYPERPARAMETERS clause", features, sql_directory)
    return " ".join(clause.split())


def product_training_days(features: str, sql_directory: Path | None = None) -> int:
    """The training window in days of the product's CREATE MODEL for an input set (its one DATEADD(day, -N, ...))."""
    return int(_one_match(_TRAINING_WINDOW, "DATEADD(day, -N, ...) training window", features, sql_directory))


def _one_match(pattern: re.Pattern[str], what: str, features: str, sql_directory: Path | None) -> str:
    """The one match of `pattern` in the product's CREATE MODEL query for an input set."""
    from fraud_common.sqlfiles import sql_dir

    path = (sql_directory or sql_dir()) / "queries" / f"{PRODUCT_MODEL_QUERY[features]}.sql"
    found = pattern.findall(path.read_text(encoding="utf-8"))
    if len(found) != 1:
        raise EvaluationError(f"{path}: expected one {what}, found {len(found)}")
    return found[0]


def train_model(
    engine: Engine,
    name: str,
    fold: Fold,
    inputs: Sequence[str],
    timeout_s: float,
    hyperparameters: str = "HYPERPARAMETERS DEFAULT",
) -> None:
    """CREATE MODEL on the fold's training window and wait until it is READY."""
    columns = ", ".join(c.lower() for c in inputs)
    engine.execute(
        f"""CREATE MODEL {name}
        FROM (SELECT {columns}, tx_fraud FROM history_features
              WHERE tx_datetime >= '{fold.train_from}' AND tx_datetime < '{fold.train_end}')
        TARGET tx_fraud
        FUNCTION fn_{name}
        IAM_ROLE default
        AUTO OFF
        MODEL_TYPE XGBOOST
        OBJECTIVE 'reg:logistic'
        PREPROCESSORS 'none'
        {hyperparameters}
        SETTINGS (S3_BUCKET 'evaluation', MAX_CELLS 100000000, MAX_RUNTIME 3600)"""
    )
    deadline = time.monotonic() + timeout_s
    while True:
        shown = dict(row[:2] for row in engine.execute(f"SHOW MODEL {name}").rows)
        state = str(shown.get("Model State", "")).upper()
        if state == "READY":
            return
        if state == "FAILED":
            raise EvaluationError(
                f"CREATE MODEL {name} failed: {shown.get('Failure Reason', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise EvaluationError(f"CREATE MODEL {name} not READY after {timeout_s:.0f} s (state {state})")
        time.sleep(0.2)


def score_period(engine: Engine, name: str, fold: Fold, inputs: Sequence[str]) -> pd.DataFrame:
    """The fold's transactions from the handbook's training start to the test end (the test-set
    rule needs the labels of the training and delay days), scored by the model's SQL function."""
    columns = ", ".join(c.lower() for c in inputs)
    result = engine.execute(
        f"""SELECT transaction_id, tx_datetime, customer_id, tx_fraud, fn_{name}({columns}) AS score
        FROM history_features
        WHERE tx_datetime >= '{fold.train_start}' AND tx_datetime < '{fold.test_end}'"""
    )
    frame = pd.DataFrame(
        result.rows, columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD", "score"]
    )
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"])
    return frame


def fold_model_name(protocol: str, inputs: Sequence[str], train_days: int, fold_index: int) -> str:
    """The model `evaluate` trains for a fold (a warehouse keeps it, so other tools can reuse it)."""
    return f"eval_{protocol}_{len(inputs)}_{train_days}d_fold{fold_index}"


def evaluate(
    engine: Engine,
    protocol: str,
    inputs: Sequence[str],
    train_days: int,
    timeout_s: float = 3600,
    hyperparameters: str = "HYPERPARAMETERS DEFAULT",
) -> list[dict[str, float]]:
    results = []
    for i, fold in enumerate(folds(protocol, train_days)):
        name = fold_model_name(protocol, inputs, train_days, i)
        started = time.perf_counter()
        train_model(engine, name, fold, inputs, timeout_s, hyperparameters)
        period = score_period(engine, name, fold, inputs)
        test = handbook_test_set(period, fold)
        if test.empty or test["TX_FRAUD"].nunique() < 2:
            raise EvaluationError(
                f"fold {i}: no usable test set between {fold.test_start} and {fold.test_end}"
            )
        results.append(
            {
                "fold": i,
                "train_from": str(fold.train_from),
                "test_start": str(fold.test_start),
                **metrics(test),
            }
        )
        results[-1]["seconds"] = time.perf_counter() - started
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", type=Path, required=True, help="raw history CSV (.csv or .csv.gz)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="ch5")
    parser.add_argument(
        "--features",
        choices=sorted(MODEL_INPUTS),
        default="all",
        help="handbook: its 15 inputs; all: + extras",
    )
    parser.add_argument(
        "--train-days",
        type=int,
        default=None,
        help="training window in days (default: the product's, from its CREATE MODEL query; book: 7)",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="engine database file, kept (default: a temporary one); a file already holding features is reused",
    )


def run(args: argparse.Namespace) -> int:
    import tempfile

    if args.train_days is not None and args.train_days < 1:
        print("error: --train-days must be at least 1", file=sys.stderr)
        return 2
    inputs = MODEL_INPUTS[args.features]
    try:
        hyperparameters = product_hyperparameters(args.features)
        train_days = args.train_days or product_training_days(args.features)
    except (OSError, EvaluationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(args.database or Path(tmp) / "evaluate.duckdb", auto_refresh_interval=None)
        try:
            if _featurised_rows(engine):
                print(f"reusing the {_featurised_rows(engine):,} featurised transactions of {args.database}")
            else:
                prepare_history_warehouse(engine)
                loaded = load_history(engine, args.history)
                started = time.perf_counter()
                compute_history_features(engine)
                print(f"{loaded:,} transactions featurised in {time.perf_counter() - started:.1f} s")
            results = evaluate(engine, args.protocol, inputs, train_days, hyperparameters=hyperparameters)
        except (HistoryFileError, RedshiftError, EvaluationError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            engine.close()
    print(f"model: {hyperparameters} (sql/queries/{PRODUCT_MODEL_QUERY[args.features]}.sql)")
    print_results(args.protocol, args.features, train_days, results)
    return 0


def _featurised_rows(engine: Engine) -> int:
    """Rows of history_features in a reused database (0 for a new one)."""
    try:
        return int(engine.execute("SELECT count(*) FROM history_features").rows[0][0])
    except RedshiftError:
        return 0


def print_results(protocol: str, features: str, train_days: int, results: list[dict[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = ("auc_roc", "average_precision", "card_precision_100")
    table = Table(title=f"protocol {protocol}, features {features}, training window {train_days} days")
    for column in ("fold", "train from", "test from", "AUC ROC", "AP", "CP@100", "s"):
        table.add_column(column)
    for r in results:
        table.add_row(
            str(r["fold"]),
            r["train_from"],
            r["test_start"],
            *(f"{r[k]:.3f}" for k in keys),
            f"{r['seconds']:.0f}",
        )
    mean = {k: float(np.mean([r[k] for r in results])) for k in keys}
    table.add_row("mean", "", "", *(f"{mean[k]:.3f}" for k in keys), "")
    published = PUBLISHED.get(protocol)
    if published:
        table.add_row("handbook", "", "", *(f"{published[k]:.3f}" for k in keys), "")
    else:
        table.add_row("handbook", "", "", "(not recorded)", "", "", "")
    Console().print(table)
