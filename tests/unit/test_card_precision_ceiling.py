"""bench/card_precision_ceiling.py: which frauds carry no point-in-time signal, and the per-day counts."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.unit

_PATH = Path(__file__).resolve().parents[2] / "bench" / "card_precision_ceiling.py"
_SPEC = importlib.util.spec_from_file_location("card_precision_ceiling", _PATH)
ceiling = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ceiling)


def test_a_compromise_hides_its_frauds_until_its_first_label_is_known():
    t = pd.Timestamp
    frauds = pd.DataFrame(
        [
            # terminal 1: a compromise opened on day 0 at 10:00
            (t("2018-04-01 10:00:00"), 1, 2, True),  # its first fraud
            (t("2018-04-04 08:00:00"), 1, 2, True),  # day 3
            (t("2018-04-08 09:59:59"), 1, 2, True),  # day 7, a second before the first label is known
            (t("2018-04-08 10:00:00"), 1, 2, False),  # day 7, the first fraud is known (t - 7 days)
            (t("2018-04-28 23:00:00"), 1, 2, False),  # day 27, the compromise's last day
            (t("2018-04-29 01:00:00"), 1, 2, True),  # day 28: a new compromise, nothing known of it
            (t("2018-04-02 12:00:00"), 1, 3, False),  # a stolen card's fraud: not scenario 2
            (t("2018-04-02 12:00:00"), 2, 1, False),  # an amount over 220
            (t("2018-04-20 09:00:00"), 2, 2, True),  # terminal 2's own compromise
        ],
        columns=["TX_DATETIME", "TERMINAL_ID", "TX_FRAUD_SCENARIO", "expected"],
    ).sample(frac=1, random_state=0)  # the function must not rely on the rows' order
    hidden = ceiling.without_signal(frauds[["TX_DATETIME", "TERMINAL_ID", "TX_FRAUD_SCENARIO"]])
    assert hidden.to_dict() == frauds["expected"].to_dict()


def test_day_counts_split_fraud_cards_by_signal_and_top():
    cards = pd.DataFrame(
        {
            "score": [0.9, 0.8, 0.7, 0.2, 0.1],
            "fraud": [1, 0, 1, 1, 1],
            "top": [True, True, True, False, False],
        },
        index=pd.Index([10, 11, 12, 13, 14], name="CUSTOMER_ID"),
    )
    counts = ceiling.day_counts(cards, hidden_cards={12, 14})
    assert counts == {"with_signal": 2, "with_signal_in_top": 1, "no_signal": 2, "no_signal_in_top": 1}
