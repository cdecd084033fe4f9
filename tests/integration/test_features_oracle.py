"""The feature definition against the Fraud Detection Handbook's published features (the oracle).

`python -m local features` computes the features of the handbook's raw history with the project's
SQL on the local engine; every transaction of 2018-08-08..14 must match the handbook's file: counts
exactly, amounts and risks to 1e-6. The only tolerated differences are rows sharing a customer and a
second with another transaction (the handbook's data README documents those ties).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from local.__main__ import main
from local.features import HANDBOOK_FEATURES
from tests.conftest import SHARED

pytestmark = pytest.mark.integration

RAW = SHARED / "data" / "handbook_raw_2018-07-01_2018-08-14.csv.gz"
REFERENCE = SHARED / "data" / "handbook_features_2018-08-08_2018-08-14.csv.gz"


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    if not RAW.exists():
        pytest.skip(f"oracle data not available at {RAW}")
    out = tmp_path_factory.mktemp("features") / "features.csv"
    assert main(["features", "--history", str(RAW), "--out", str(out)]) == 0
    ours = pd.read_csv(out)
    reference = pd.read_csv(REFERENCE)
    assert len(ours) == 430_983, "every raw transaction gets features"
    merged = reference.merge(ours, on="TRANSACTION_ID", how="left", suffixes=("_ref", ""), indicator=True)
    assert (merged["_merge"] == "both").all(), "every reference transaction is in our output"
    return merged


def _same_second_ties(merged: pd.DataFrame) -> pd.Series:
    """Rows whose customer has another transaction in the same second (in the whole raw history)."""
    raw = pd.read_csv(RAW, usecols=["CUSTOMER_ID", "TX_DATETIME"])
    sizes = raw.groupby(["CUSTOMER_ID", "TX_DATETIME"]).size().rename("same_second")
    keyed = merged.join(sizes, on=["CUSTOMER_ID_ref", "TX_DATETIME_ref"])
    return keyed["same_second"] > 1


def test_every_handbook_feature_matches(compared: pd.DataFrame) -> None:
    ties = _same_second_ties(compared)
    assert ties.sum() < 50, "ties are the rare exception"
    mismatched = pd.Series(False, index=compared.index)
    for column in HANDBOOK_FEATURES:
        ours, ref = compared[column], compared[f"{column}_ref"]
        if "NB_TX" in column or column.startswith("TX_DURING"):
            wrong = ours != ref  # counts and flags: exactly
        else:
            wrong = ~np.isclose(ours, ref, rtol=0, atol=1e-6)
        mismatched |= wrong
        assert not (wrong & ~ties).any(), (
            f"{column}: {int((wrong & ~ties).sum())} rows differ, e.g. "
            f"{compared.loc[wrong & ~ties, ['TRANSACTION_ID', column, column + '_ref']].head(3).to_dict('records')}"
        )
    assert mismatched.sum() <= ties.sum()


def test_raw_columns_pass_through(compared: pd.DataFrame) -> None:
    for column in ("TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_FRAUD"):
        assert (compared[column] == compared[f"{column}_ref"]).all(), column
    assert np.allclose(compared["TX_AMOUNT"], compared["TX_AMOUNT_ref"], rtol=0, atol=1e-9)
