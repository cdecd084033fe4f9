"""Finding, templating and splitting the project's SQL files.

The SQL lives in the repository's `sql/`; the layer build copies it next to this package
(`fraud_common/sql`), which is looked up first. `FRAUD_SQL_DIR` overrides both (tests, tools).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from fraud_common.settings import IDENTIFIER

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Which placeholders exist and what a valid value looks like: values come from settings, and are
# still checked, because they are spliced into SQL text (Data API parameters cannot name objects).
# Stream names are lowercase: Redshift folds a quoted identifier to lowercase unless the cluster sets
# enable_case_sensitive_identifier, while Kinesis names are case sensitive, so a capital would make
# the streaming MV look for a stream that does not exist.
STREAM_NAME = re.compile(r"^[a-z0-9_.-]{1,128}$")
ALLOWED = {
    "TX_STREAM": STREAM_NAME,
    "LABEL_STREAM": STREAM_NAME,
    "IAM_ROLE": re.compile(r"^(default|arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512})$"),
    "S3_BUCKET": re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
    "MODEL_NAME": IDENTIFIER,
    "MODEL_FUNCTION": IDENTIFIER,
    "MAX_RUNTIME": re.compile(r"^\d{1,9}$"),
    "MAX_CELLS": re.compile(r"^\d{1,12}$"),
}

HINTS = {
    name: " (Kinesis stream names used from Redshift must be lowercase: it folds quoted identifiers to lowercase)"
    for name in ("TX_STREAM", "LABEL_STREAM")
}


class SqlTemplateError(ValueError):
    """A SQL file uses an unknown placeholder, or a value does not fit its placeholder."""


def sql_dir() -> Path:
    """The directory holding migrations/ and queries/: override, packaged copy, then the repository's."""
    override = os.environ.get("FRAUD_SQL_DIR")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parents[2] / "sql"):
        if (candidate / "migrations").is_dir() or (candidate / "queries").is_dir():
            return candidate
    raise FileNotFoundError(f"no sql/ directory next to {here} or in the repository; set FRAUD_SQL_DIR")


def fill(sql: str, values: Mapping[str, str], source: str = "<sql>") -> str:
    """Replace `${NAME}` placeholders; unknown names and values that fail validation are errors."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ALLOWED:
            raise SqlTemplateError(f"{source}: unknown placeholder ${{{name}}}")
        if name not in values:
            raise SqlTemplateError(f"{source}: no value for placeholder ${{{name}}}")
        value = str(values[name])
        if not ALLOWED[name].fullmatch(value):  # fullmatch: `$` alone lets a final newline through
            raise SqlTemplateError(
                f"{source}: value {value!r} is not valid for ${{{name}}}{HINTS.get(name, '')}"
            )
        if name == "IAM_ROLE" and value != "default":  # Redshift: IAM_ROLE { default | 'arn' }
            return f"'{value}'"
        return value

    return PLACEHOLDER.sub(replace, sql)


def split_statements(sql: str) -> list[str]:
    """Split at `;` that ends a line (trailing spaces or a `--` comment allowed), outside quotes,
    quoted identifiers, comments and `$$` bodies. Comment-only chunks are dropped."""
    statements: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        two = sql[i : i + 2]
        if two == "--":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if two == "/*":
            end = sql.find("*/", i + 2)
            if end < 0:
                raise SqlTemplateError("unterminated /* comment")
            i = end + 2
            continue
        if two == "$$":
            end = sql.find("$$", i + 2)
            if end < 0:
                raise SqlTemplateError("unterminated $$ body")
            i = end + 2
            continue
        if ch in ("'", '"'):
            i = _skip_quoted(sql, i, ch)
            continue
        if ch == ";" and _rest_of_line_is_blank(sql, i + 1):
            _append(statements, sql[start : i + 1])
            start = i + 1
        i += 1
    _append(statements, sql[start:])
    return statements


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(sql):
        if sql[j] == quote:
            if sql[j + 1 : j + 2] == quote:  # doubled quote escapes itself
                j += 2
                continue
            return j + 1
        if quote == "'" and sql[j] == "\\":  # Redshift also accepts backslash escapes in strings
            j += 2
            continue
        j += 1
    raise SqlTemplateError(f"unterminated {quote}-quoted text starting at offset {i}")


def _rest_of_line_is_blank(sql: str, i: int) -> bool:
    end = sql.find("\n", i)
    rest = sql[i:] if end < 0 else sql[i:end]
    rest = rest.strip()
    return not rest or rest.startswith("--")


def _append(statements: list[str], chunk: str) -> None:
    if _has_code(chunk):
        statements.append(chunk.strip().removesuffix(";").rstrip())


def _has_code(chunk: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", chunk, flags=re.S)
    return bool(without_comments.strip().strip(";").strip())
