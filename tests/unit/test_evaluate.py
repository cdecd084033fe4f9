"""The handbook's evaluation rules on tiny hand-computed examples: the test-set rule and CP@k."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fraud_common.sqlfiles import sql_dir

from local.evaluate import (
    PRODUCT_MODEL_QUERY,
    EvaluationError,
    Fold,
    card_precision_at_k,
    folds,
    handbook_test_set,
    product_hyperparameters,
    product_training_days,
)
from local.redshift.ml.statements import CreateModel, parse

pytestmark = pytest.mark.unit


def frame(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=["TX_DATETIME", "CUSTOMER_ID", "TX_FRAUD", "score"])
    out["TX_DATETIME"] = pd.to_datetime(out["TX_DATETIME"])
    return out


def test_folds_follow_the_handbook_dates() -> None:
    (only,) = folds("ch3")
    assert (only.train_start, only.train_end, only.test_start, only.test_end) == (
        dt.date(2018, 7, 25),
        dt.date(2018, 8, 1),
        dt.date(2018, 8, 8),
        dt.date(2018, 8, 15),
    )
    ch5 = folds("ch5", train_days=21)
    assert [f.train_start for f in ch5] == [
        dt.date(2018, 8, 15),
        dt.date(2018, 8, 8),
        dt.date(2018, 8, 1),
        dt.date(2018, 7, 25),
    ]
    assert ch5[0].train_from == dt.date(2018, 8, 1), "a longer window ends where the book's ends"


def test_test_set_drops_cards_with_a_known_fraud() -> None:
    fold = Fold(dt.date(2018, 7, 25), 7)  # train 25-31 Jul, delay 1-7 Aug, test 8-14 Aug
    data = frame(
        [
            ("2018-07-26 10:00:00", 1, 1, 0),  # card 1: fraud in training -> never in the test set
            ("2018-08-01 09:00:00", 2, 1, 0),  # card 2: fraud on delay day 1 -> known from test day 2
            ("2018-08-06 09:00:00", 3, 1, 0),  # card 3: fraud on delay day 6 -> known from test day 7 only
            ("2018-08-08 12:00:00", 1, 0, 0.9),
            ("2018-08-08 12:00:00", 2, 0, 0.8),  # test day 1: card 2 not known yet (rule adds day d-1)
            ("2018-08-09 12:00:00", 2, 0, 0.7),  # test day 2: card 2 known -> dropped
            ("2018-08-13 12:00:00", 3, 1, 0.6),  # test day 6: card 3 still unknown
            ("2018-08-14 12:00:00", 3, 1, 0.5),  # test day 7: card 3 known -> dropped
            ("2018-08-14 13:00:00", 4, 0, 0.1),
        ]
    )
    test = handbook_test_set(data, fold)
    kept = list(zip(test["TX_DATETIME"].dt.strftime("%m-%d"), test["CUSTOMER_ID"], strict=True))
    assert kept == [("08-08", 2), ("08-13", 3), ("08-14", 4)]


def test_card_precision_at_k_counts_cards_once_and_drops_detected_cards() -> None:
    data = frame(
        [
            # day 1: card 1 (fraud, two transactions), card 2 (genuine), card 3 (fraud, low score)
            ("2018-08-08 01:00:00", 1, 1, 0.9),
            ("2018-08-08 02:00:00", 1, 0, 0.95),
            ("2018-08-08 03:00:00", 2, 0, 0.8),
            ("2018-08-08 04:00:00", 3, 1, 0.1),
            # day 2: card 1 again (already detected -> removed), card 3 now on top
            ("2018-08-09 01:00:00", 1, 1, 0.99),
            ("2018-08-09 02:00:00", 3, 1, 0.7),
            ("2018-08-09 03:00:00", 2, 0, 0.6),
        ]
    )
    # k=2: day 1 top cards {1 (0.95, fraud), 2 (0.8)} -> 1/2; day 2 without card 1: {3 (fraud), 2} -> 1/2
    assert card_precision_at_k(data, k=2) == pytest.approx(0.5)
    # k=1: day 1 -> card 1 (fraud) 1/1; day 2 without card 1 -> card 3 (fraud) 1/1
    assert card_precision_at_k(data, k=1) == pytest.approx(1.0)
    # k=3: day 1 -> cards 1, 2, 3: 2 frauds / 3; day 2 without cards 1 and 3 -> card 2: 0 / 3
    assert card_precision_at_k(data, k=3) == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize("features", sorted(PRODUCT_MODEL_QUERY))
def test_evaluation_trains_with_the_product_hyperparameters(features: str) -> None:
    clause = product_hyperparameters(features)
    product = (sql_dir() / "queries" / f"{PRODUCT_MODEL_QUERY[features]}.sql").read_text()
    statement = parse(
        "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default AUTO OFF MODEL_TYPE XGBOOST "
        f"OBJECTIVE 'reg:logistic' PREPROCESSORS 'none' {clause} SETTINGS (S3_BUCKET 'b')"
    )
    assert isinstance(statement, CreateModel)
    assert statement.hyperparameters, "the product sets hyperparameters; the clause must carry them"
    for key, value in statement.hyperparameters.items():
        assert f"{key} '{value}'" in product


@pytest.mark.parametrize("features", sorted(PRODUCT_MODEL_QUERY))
def test_evaluation_trains_on_the_product_window(features: str) -> None:
    days = product_training_days(features)
    product = (sql_dir() / "queries" / f"{PRODUCT_MODEL_QUERY[features]}.sql").read_text()
    assert f"DATEADD(day, -{days}, (SELECT MAX(tx_datetime) FROM training_set))" in product


# Both readers share one "exactly one match in the product's CREATE MODEL" rule: the same checks for each.
@pytest.mark.parametrize(
    ("reader", "none", "two", "one", "expected"),
    [
        (
            product_hyperparameters,
            "CREATE MODEL m FROM t TARGET y FUNCTION f IAM_ROLE default SETTINGS (S3_BUCKET 'b')",
            "HYPERPARAMETERS DEFAULT\nHYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '5')",
            "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '5',\n    MAX_DEPTH '3')\nSETTINGS (S3_BUCKET 'b')",
            "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '5', MAX_DEPTH '3')",
        ),
        (
            product_training_days,
            "CREATE MODEL m FROM (SELECT * FROM training_set) TARGET y FUNCTION f",
            "WHERE a > DATEADD(day, -7, x) AND b > DATEADD(day, -14, x)",
            "WHERE tx_datetime > DATEADD(DAY, -84, (SELECT MAX(tx_datetime) FROM training_set))",
            84,
        ),
    ],
)
def test_product_model_readers_need_exactly_one_match(
    tmp_path: Path, reader: Callable[..., object], none: str, two: str, one: str, expected: object
) -> None:
    (tmp_path / "queries").mkdir()
    query = tmp_path / "queries" / "create_model.sql"
    query.write_text(none)
    with pytest.raises(EvaluationError, match="found 0"):
        reader("all", tmp_path)
    query.write_text(two)
    with pytest.raises(EvaluationError, match="found 2"):
        reader("all", tmp_path)
    query.write_text(one)
    assert reader("all", tmp_path) == expected
    with pytest.raises(FileNotFoundError):
        reader("handbook", tmp_path)
