"""`python -m local features` on bad input: a clear error, exit status 1, no output file."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.__main__ import main

pytestmark = pytest.mark.unit

HEADER = "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO\n"


def run(tmp_path: Path, content: str | None) -> tuple[int, Path]:
    history = tmp_path / "history.csv"
    if content is not None:
        history.write_text(content)
    out = tmp_path / "features.csv"
    return main(["features", "--history", str(history), "--out", str(out)]), out


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, None)
    assert status == 1 and not out.exists()
    assert "no such file" in capsys.readouterr().err


def test_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(
        tmp_path, "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TX_AMOUNT\n1,2018-08-01 00:00:00,1,10.5\n"
    )
    assert status == 1 and not out.exists()
    err = capsys.readouterr().err
    assert "missing column(s)" in err and "TERMINAL_ID" in err and "TX_FRAUD" in err


def test_value_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, HEADER + "1,not a date,1,2,10.50,0,0,0,0\n")
    assert status == 1 and not out.exists()
    assert "rows do not fit the history table" in capsys.readouterr().err


def test_good_file_gives_one_row_per_transaction(tmp_path: Path) -> None:
    status, out = run(
        tmp_path,
        HEADER + "1,2018-08-01 10:00:00,1,2,10.50,0,0,0,0\n2,2018-08-01 11:00:00,1,3,20.50,0,0,1,1\n",
    )
    assert status == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("TRANSACTION_ID,TX_DATETIME")
    assert lines[2].split(",")[11:13] == ["2.0", "15.5"]  # 2 transactions in the day, mean 15.50
