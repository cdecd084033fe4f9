"""The Redshift emulator's engine: one DuckDB database file, Redshift SQL in, typed rows out.

Public interface (used by the Data API server, the ML emulation, the stack and tests):

    engine = Engine(path)                        # opens/creates the DuckDB file
    result = engine.execute(sql, {"name": "v"})  # one statement; :name parameters bound
    results = engine.execute_batch([sql1, sql2], params)  # all or nothing, one transaction
    engine.close()

Errors are raised as `RedshiftError` with Redshift-like message text and a SQLSTATE code.
This skeleton passes SQL through sqlglot's Redshift->DuckDB transpiler; the full emulator
(streaming MVs, COPY, system views, Redshift semantics) grows from here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import sqlglot


class RedshiftError(Exception):
    """A statement failed the way Redshift would report it."""

    def __init__(self, message: str, code: str = "XX000") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str  # Redshift type name as the Data API reports it: int4, int8, varchar, numeric, float8, bool, timestamp, date, super
    precision: int = 0
    scale: int = 0
    nullable: bool = True


@dataclass
class Result:
    columns: list[Column] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    rowcount: int = -1  # rows affected by DML, -1 when not applicable

    @property
    def has_result_set(self) -> bool:
        return bool(self.columns)


class Engine:
    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = duckdb.connect(self.path)
        self._lock = threading.RLock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for the calling thread (DuckDB cursors share the database)."""
        return self._db.cursor()

    def execute(self, sql: str, parameters: Mapping[str, str] | None = None) -> Result:
        return self.execute_batch([sql], parameters)[-1]

    def execute_batch(self, sqls: Sequence[str], parameters: Mapping[str, str] | None = None) -> list[Result]:
        con = self.cursor()
        results = []
        try:
            con.execute("BEGIN")
            for sql in sqls:
                duck_sql = sqlglot.transpile(sql, read="redshift", write="duckdb")[0]
                con.execute(duck_sql, dict(parameters or {}) or None)
                results.append(_result(con))
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise RedshiftError(f"ERROR: {exc}") from exc
        finally:
            con.close()
        return results

    def close(self) -> None:
        self._db.close()


def _result(con: duckdb.DuckDBPyConnection) -> Result:
    if con.description is None:
        return Result()
    columns = [Column(d[0], str(d[1]).lower()) for d in con.description]
    return Result(columns=columns, rows=con.fetchall())
