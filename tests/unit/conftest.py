"""Rows for the feature definition's tests: raw history and stream transactions, one INSERT each call."""

from __future__ import annotations

from collections.abc import Sequence

from local.redshift.engine import Engine


def add_history(engine: Engine, rows: Sequence[tuple]) -> None:
    """rows: (transaction_id, tx_datetime, customer_id, terminal_id, amount, fraud)."""
    if not rows:
        return
    values = ", ".join(
        f"({tx}, '{at}', {customer}, {terminal}, {amount}, {fraud})"
        for tx, at, customer, terminal, amount, fraud in rows
    )
    engine.execute(
        "INSERT INTO cust_payment_tx_history (transaction_id, tx_datetime, customer_id, terminal_id, "
        f"tx_amount, tx_fraud) VALUES {values}"
    )


def add_stream(engine: Engine, rows: Sequence[tuple], refresh: str = "2030-01-01 00:00:00") -> None:
    """rows: (transaction_id, tx_datetime, customer_id, terminal_id, amount), all refreshed at `refresh`."""
    if not rows:
        return
    values = ", ".join(
        f"('{refresh}', '{tx}', '{refresh}', {tx}, '{at}', {customer}, {terminal}, {amount})"
        for tx, at, customer, terminal, amount in rows
    )
    engine.execute(
        "INSERT INTO cust_payment_tx_stream (approximate_arrival_timestamp, sequence_number, refresh_time, "
        f"transaction_id, tx_datetime, customer_id, terminal_id, tx_amount) VALUES {values}"
    )
