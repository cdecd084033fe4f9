"""Redshift-like errors: message text close to Redshift's and a SQLSTATE, mapped from DuckDB's errors."""

from __future__ import annotations

import re

import duckdb


class RedshiftError(Exception):
    """A statement failed the way Redshift would report it."""

    def __init__(self, message: str, code: str = "XX000") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.statement_index: int | None = None  # set by Engine.execute_batch: the failing element


_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r'(?:Table|View|Table Function) with name "?([^"!\s]+)"? does not exist'),
        'relation "{0}" does not exist',
        "42P01",
    ),
    (
        re.compile(r'(?:Table|View) with name "?([^"!\s]+)"? already exists'),
        'relation "{0}" already exists',
        "42P07",
    ),
    (re.compile(r'Schema with name "?([^"!\s]+)"? does not exist'), 'schema "{0}" does not exist', "3F000"),
    (re.compile(r'Schema with name "?([^"!\s]+)"? already exists'), 'schema "{0}" already exists', "42P06"),
    (
        re.compile(r'(?:Scalar |Aggregate |Table )?Function with name "?([^"!\s(]+)"? does not exist'),
        "function {0} does not exist",
        "42883",
    ),
    (re.compile(r'Referenced column "?([^"\s]+)"? not found'), 'column "{0}" does not exist', "42703"),
    (
        re.compile(r'Table "?([^"\s]+)"? does not have a column named "?([^"\s]+)"?'),
        'column "{1}" of relation "{0}" does not exist',
        "42703",
    ),
    (re.compile(r"Division by zero", re.IGNORECASE), "division by zero", "22012"),
    (
        re.compile(r"NOT NULL constraint failed: ([\w.]+)"),
        'null value in column "{0}" violates not-null constraint',
        "23502",
    ),
    (re.compile(r"must appear in the GROUP BY clause", re.IGNORECASE), "{m}", "42803"),
    (
        re.compile(r"Conflict on|write-write conflict|Transaction conflict", re.IGNORECASE),
        "1023 DETAIL: Serializable isolation violation on table: {m}",
        "40001",
    ),
]

_CLASS_CODES = {
    duckdb.ParserException: "42601",
    duckdb.ConversionException: "22P02",
    duckdb.OutOfRangeException: "22003",
    duckdb.CatalogException: "42P01",
    duckdb.BinderException: "42703",
    duckdb.ConstraintException: "23000",
    duckdb.InvalidInputException: "22023",
    duckdb.TransactionException: "25000",
}


def _strip(message: str) -> str:
    first = message.strip().split("\n", 1)[0]
    return re.sub(r"^[A-Za-z ]*Error: ", "", first).strip()


def from_duckdb(exc: duckdb.Error, table: str | None = None) -> RedshiftError:
    """Map a DuckDB error to Redshift's message and SQLSTATE (table: the statement's only table, if any)."""
    text = str(exc)
    plain = _strip(text)
    if isinstance(exc, duckdb.InterruptException):
        return RedshiftError("Query cancelled on user's request", "57014")
    if isinstance(exc, duckdb.ParserException):
        near = re.search(r'syntax error at or near "([^"]*)"', text)
        if near:
            return RedshiftError(f'syntax error at or near "{near.group(1)}"', "42601")
        return RedshiftError(f"syntax error: {plain}", "42601")
    for pattern, template, code in _PATTERNS:
        match = pattern.search(text)
        if match:
            groups = [g.split(".")[-1] for g in match.groups()]
            message = template.format(*groups, m=plain)
            if code == "42703" and table and "of relation" not in message:
                message += f" in {table}"
            return RedshiftError(message, code)
    for cls, code in _CLASS_CODES.items():
        if isinstance(exc, cls):
            return RedshiftError(plain, code)
    return RedshiftError(plain, "XX000")
