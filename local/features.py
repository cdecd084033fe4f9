"""`python -m local features`: the point-in-time features of a history CSV, by the project's own SQL.

Loads the file (the article's raw columns with TX_FRAUD; .csv or .csv.gz) into
`cust_payment_tx_history` on a local engine, applies the warehouse migrations that hold the tables
and the feature definition (`sql/migrations/00[2-4]*.sql`), runs `tx_features` through the engine and
writes one row per transaction. For backfills and for checking against the handbook's features.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from local.redshift.engine import Engine, RedshiftError
from producer.simulator import COLUMNS as HISTORY_COLUMNS  # the article's raw history columns

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = REPO / "sql"
# Migrations a history-only warehouse needs: tables, the product's tables, the feature definition.
HISTORY_MIGRATIONS = ("002_history.sql", "003_tables.sql", "004_features.sql")
REQUIRED_COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD")
HANDBOOK_FEATURES = (
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW",
    "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW",
    "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW",
    "TERMINAL_ID_RISK_30DAY_WINDOW",
)
EXTRA_FEATURES = (
    "CUSTOMER_ID_NB_TX_BASELINE_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_BASELINE_WINDOW",
    "AMOUNT_TO_BASELINE_RATIO",
    "CUSTOMER_AVG_AMOUNT_14DAY_TO_BASELINE_RATIO",
    "TERMINAL_ID_DAYS_SINCE_LAST_FRAUD",
    "TERMINAL_ID_DAYS_SINCE_FIRST_FRAUD",
    "TERMINAL_ID_LAST_KNOWN_LABEL",
    "TERMINAL_ID_RISK_SINCE_FIRST_FRAUD",
    "TERMINAL_ID_COMPROMISE_DAY",
    "CUSTOMER_QUARTIC_MEAN_AMOUNT_14DAY_TO_BASELINE_RATIO",
    "TERMINAL_ID_MIN_FRAUD_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_MAX_FRAUD_AMOUNT_30DAY_WINDOW",
)

# A backfill has no Kinesis: the stream views the feature definition reads exist, empty, with the
# streaming MVs' columns (001_streams.sql), so tx_events is the history alone.
_EMPTY_STREAMS = (
    """CREATE TABLE IF NOT EXISTS cust_payment_tx_stream (
        approximate_arrival_timestamp timestamp, partition_key varchar(256), shard_id varchar(128),
        sequence_number varchar(128), refresh_time timestamp, transaction_id bigint, tx_datetime timestamp,
        customer_id integer, terminal_id integer, tx_amount decimal(18, 2), tx_time_seconds integer,
        tx_time_days integer, produced_at bigint)""",
    """CREATE TABLE IF NOT EXISTS cust_payment_label_stream (
        approximate_arrival_timestamp timestamp, partition_key varchar(256), shard_id varchar(128),
        sequence_number varchar(128), refresh_time timestamp, transaction_id bigint, tx_fraud integer,
        labelled_at varchar(40))""",
)


class HistoryFileError(ValueError):
    """The history file cannot be read as the article's raw transaction columns."""


def migration_statements(names: tuple[str, ...] = HISTORY_MIGRATIONS) -> list[str]:
    """The statements of the given migrations, minus COPY (the CLI loads the file itself)."""
    from fraud_common.sqlfiles import split_statements

    statements = []
    for name in names:
        for statement in split_statements((SQL_DIR / "migrations" / name).read_text()):
            if not statement.lstrip().upper().startswith("COPY"):
                statements.append(statement)
    return statements


def prepare_history_warehouse(engine: Engine) -> None:
    """Create the history-only warehouse: empty streams, history tables, feature views."""
    for sql in (*_EMPTY_STREAMS, *migration_statements()):
        engine.execute(sql)


def load_history(engine: Engine, path: Path) -> int:
    """Append a raw history CSV to cust_payment_tx_history; returns the rows loaded."""
    if not path.is_file():
        raise HistoryFileError(f"{path}: no such file")
    con = engine.cursor()
    try:
        try:
            header = con.execute("SELECT * FROM read_csv(?, header = true) LIMIT 0", [str(path)]).description
        except Exception as exc:  # duckdb raises several error classes for unreadable files
            raise HistoryFileError(f"{path}: not a readable CSV file ({exc})") from exc
        present = {d[0].upper() for d in header}
        missing = [c for c in REQUIRED_COLUMNS if c not in present]
        if missing:
            raise HistoryFileError(f"{path}: missing column(s) {', '.join(missing)}")
        select = ", ".join(c if c in present else f"NULL AS {c}" for c in HISTORY_COLUMNS)
        before = con.execute("SELECT count(*) FROM cust_payment_tx_history").fetchone()[0]
        try:
            con.execute(
                f"INSERT INTO cust_payment_tx_history SELECT {select} FROM read_csv(?, header = true)",
                [str(path)],
            )
        except Exception as exc:
            raise HistoryFileError(f"{path}: rows do not fit the history table ({exc})") from exc
        after = con.execute("SELECT count(*) FROM cust_payment_tx_history").fetchone()[0]
    finally:
        con.close()
    return after - before


def compute_history_features(engine: Engine) -> int:
    """Featurise history rows not featurised yet into history_features (THE definition); returns rows added."""
    result = engine.execute((SQL_DIR / "queries" / "featurise_history.sql").read_text())
    return result.rowcount


def export_features(engine: Engine, out: Path) -> int:
    """Write history_features joined with the raw columns to a CSV (handbook column names)."""
    features = ", ".join(f"f.{c.lower()} AS {c}" for c in (*HANDBOOK_FEATURES, *EXTRA_FEATURES))
    raw = ", ".join(f"h.{c.lower()} AS {c}" for c in HISTORY_COLUMNS)
    con = engine.cursor()
    try:
        con.execute(
            f"COPY (SELECT {raw}, {features} FROM cust_payment_tx_history h "
            "JOIN history_features f ON f.transaction_id = h.transaction_id "
            f"ORDER BY h.tx_datetime, h.transaction_id) TO '{_sql_string(out)}' (HEADER, DELIMITER ',')"
        )
        return con.execute("SELECT count(*) FROM history_features").fetchone()[0]
    finally:
        con.close()


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", type=Path, required=True, help="raw history CSV (.csv or .csv.gz)")
    parser.add_argument("--out", type=Path, required=True, help="output CSV of the features")
    parser.add_argument("--database", default=":memory:", help="engine database file (default: in memory)")


def run(args: argparse.Namespace) -> int:
    engine = Engine(args.database, auto_refresh_interval=None)
    try:
        prepare_history_warehouse(engine)
        loaded = load_history(engine, args.history)
        started = time.perf_counter()
        added = compute_history_features(engine)
        elapsed = time.perf_counter() - started
        written = export_features(engine, args.out)
    except (HistoryFileError, RedshiftError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    print(
        f"loaded {loaded} transactions, featurised {added} in {elapsed:.2f} s, wrote {written} rows to {args.out}"
    )
    return 0
