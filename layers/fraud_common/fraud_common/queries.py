"""Named queries: `sql/queries/<name>.sql`, one statement each, values only as Data API parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fraud_common.dataapi import DataApi, StatementResult
from fraud_common.sqlfiles import fill, sql_dir

QUERY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class QueryNotFound(FileNotFoundError):
    pass


def load(name: str, placeholders: Mapping[str, str], directory: Path | None = None) -> str:
    """The query's SQL with its placeholders filled."""
    return fill(_read(name, directory or sql_dir() / "queries"), placeholders, f"queries/{name}.sql")


def _read(name: str, directory: Path) -> str:
    if not QUERY_NAME.match(name):
        raise ValueError(f"bad query name {name!r}")
    path = directory / f"{name}.sql"
    if not path.is_file():
        raise QueryNotFound(f"no query file {path}")
    return path.read_text(encoding="utf-8").strip().removesuffix(";")


def run(
    api: DataApi,
    name: str,
    placeholders: Mapping[str, str],
    parameters: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> StatementResult:
    return api.execute(load(name, placeholders, directory), parameters, name=f"query {name}")
