"""Analysis: how far the product's Card Precision@100 is from what any model could reach on a simulated world.

The simulator (like the handbook's) records why each fraud happened (TX_FRAUD_SCENARIO). A scenario-2
fraud belongs to a terminal compromise: every transaction at the terminal is a fraud for 28 days. Labels
are known 7 days after each transaction (to the second), so until 7 days after the compromise's first
fraud no point-in-time feature can tell its frauds from genuine transactions. For each test day of the
ch5 folds, ranked by the product's model as `python -m local evaluate` ranks them, this counts the fraud
cards with and without any such signal and how many of each are in the day's top 100. A ranker that put
every fraud card with a signal first would score (fraud cards with a signal) / 100: the ceiling, plus
what chance adds among the cards without a signal.

    .venv/bin/python bench/card_precision_ceiling.py                   # simulates the default world
    .venv/bin/python bench/card_precision_ceiling.py --history FILE    # a history CSV with TX_FRAUD_SCENARIO
    .venv/bin/python -m local evaluate --history FILE --protocol ch5 --features all --database W.duckdb
    .venv/bin/python bench/card_precision_ceiling.py --database W.duckdb   # reuses its warehouse and models
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local.evaluate import (
    MODEL_INPUTS,
    daily_cards,
    fold_model_name,
    folds,
    handbook_test_set,
    product_hyperparameters,
    product_training_days,
    score_period,
    train_model,
)
from local.features import compute_history_features, load_history, prepare_history_warehouse
from local.redshift.engine import Engine, RedshiftError
from producer.export import export_simulated_history
from producer.simulator import TERMINAL_COMPROMISE_DAYS

LABEL_DELAY_DAYS = 7  # the feature definition's (sql/migrations/004_features.sql)


def without_signal(frauds: pd.DataFrame) -> pd.Series:
    """For each fraud (TX_DATETIME, TERMINAL_ID, TX_FRAUD_SCENARIO): True when it is a scenario-2 fraud
    earlier than the label delay after its compromise's first fraud (no fraud of it can be known yet).

    A compromise is a run of a terminal's scenario-2 frauds that starts on a day and spans the next
    TERMINAL_COMPROMISE_DAYS calendar days (the simulator's rule; overlapping
    compromises of one terminal, rare, are taken as one that ends early); a later fraud at the terminal starts a new one."""
    compromise = frauds[frauds["TX_FRAUD_SCENARIO"] == 2].sort_values(["TERMINAL_ID", "TX_DATETIME"])
    first_fraud_at = pd.Series(pd.NaT, index=compromise.index, dtype="datetime64[ns]")
    for _, runs in compromise.groupby("TERMINAL_ID", sort=False):
        start = None
        for index, at in runs["TX_DATETIME"].items():
            if start is None or (at.normalize() - start.normalize()).days >= TERMINAL_COMPROMISE_DAYS:
                start = at
            first_fraud_at[index] = start
    hidden = compromise["TX_DATETIME"] < first_fraud_at + pd.Timedelta(days=LABEL_DELAY_DAYS)
    return hidden.reindex(frauds.index, fill_value=False)


def day_counts(cards: pd.DataFrame, hidden_cards: set) -> dict[str, int]:
    """One ranked day (`daily_cards`): fraud cards with and without a signal, and how many of each the top holds."""
    fraud = cards[cards["fraud"] == 1]
    hidden = fraud.index.isin(list(hidden_cards))
    return {
        "with_signal": int((~hidden).sum()),
        "with_signal_in_top": int((~hidden & fraud["top"]).sum()),
        "no_signal": int(hidden.sum()),
        "no_signal_in_top": int((hidden & fraud["top"]).sum()),
    }


def analyse(engine: Engine, k: int = 100) -> pd.DataFrame:
    inputs = MODEL_INPUTS["all"]
    frauds = pd.DataFrame(
        engine.execute(
            "SELECT transaction_id, tx_datetime, terminal_id, tx_fraud_scenario "
            "FROM cust_payment_tx_history WHERE tx_fraud = 1"
        ).rows,
        columns=["TRANSACTION_ID", "TX_DATETIME", "TERMINAL_ID", "TX_FRAUD_SCENARIO"],
    )
    if frauds["TX_FRAUD_SCENARIO"].isna().all():
        raise SystemExit("the history has no TX_FRAUD_SCENARIO: this analysis needs a simulated world")
    frauds["TX_DATETIME"] = pd.to_datetime(frauds["TX_DATETIME"])
    hidden_ids = set(frauds.loc[without_signal(frauds), "TRANSACTION_ID"])
    train_days = product_training_days("all")
    rows = []
    for i, fold in enumerate(folds("ch5", train_days)):
        name = fold_model_name("ch5", inputs, train_days, i)
        try:
            engine.execute(f"SHOW MODEL {name}")
        except RedshiftError:
            train_model(engine, name, fold, inputs, 3600, product_hyperparameters("all"))
        test = handbook_test_set(score_period(engine, name, fold, inputs), fold)
        frauds_tested = test[test["TX_FRAUD"] == 1]
        # (day, card) -> whether the card has no signal that day: every fraud of it then is hidden
        hidden = (
            frauds_tested["TRANSACTION_ID"]
            .isin(hidden_ids)
            .groupby([frauds_tested["TX_DATETIME"].dt.floor("D"), frauds_tested["CUSTOMER_ID"]])
            .all()
        )
        hidden_by_day: dict[pd.Timestamp, set] = {}
        for card_day, card in hidden.index[hidden]:
            hidden_by_day.setdefault(card_day, set()).add(card)
        for day, cards in daily_cards(test, k):
            rows.append({"fold": i, "day": day.date(), **day_counts(cards, hidden_by_day.get(day, set()))})
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=Path, help="raw history CSV (default: simulate the default world)")
    parser.add_argument(
        "--database", type=Path, help="a `local evaluate` warehouse to reuse (created when missing)"
    )
    args = parser.parse_args()
    fresh = args.database is None or not args.database.exists()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(args.database or Path(tmp) / "ceiling.duckdb", auto_refresh_interval=None)
        try:
            if fresh:
                prepare_history_warehouse(engine)
                load_history(engine, args.history or export_simulated_history(Path(tmp)))
                compute_history_features(engine)
            days = analyse(engine)
        finally:
            engine.close()
    mean = days.drop(columns=["fold", "day"]).mean()
    print(
        f"ch5, {len(days)} test days, per day (mean): " + ", ".join(f"{c} {v:.2f}" for c, v in mean.items())
    )
    in_top = mean["with_signal_in_top"] + mean["no_signal_in_top"]
    print(
        f"CP@100 of the model: {in_top / 100:.4f} (cards with no signal in its top: {mean['no_signal_in_top']:.2f})"
    )
    print(f"every card with a signal in the top 100: {mean['with_signal'] / 100:.4f} (plus what chance adds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
