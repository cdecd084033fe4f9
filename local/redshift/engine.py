"""The Redshift emulator's engine: one DuckDB database file, Redshift SQL in, typed rows out.

Public interface (used by the Data API server, the ML emulation, the stack and tests):

    engine = Engine(path, auto_refresh_interval=1.0)  # opens/creates the DuckDB file
    result = engine.execute(sql, {"name": "v"})       # one statement (or a script); :name bound
    results = engine.execute_batch([sql1, sql2], params)  # all or nothing, one transaction
    engine.set_clock(datetime(2018, 10, 1, 12))       # GETDATE()/SYSDATE for replays; None = wall clock
    engine.refresh("mv_name")                         # REFRESH MATERIALIZED VIEW from Python
    engine.connection()                               # this thread's DuckDB connection (set up)
    engine.close()

Statements are translated by `local.redshift.translate` (sqlglot) or handled by the emulator:
CREATE EXTERNAL SCHEMA, materialized views (`local.redshift.streaming`), COPY (`local.redshift.copy`),
SET/RESET emulator_clock, transaction control, and CREATE/SHOW/DROP MODEL (the `local.redshift.ml`
plugin, when installed). Errors are `RedshiftError` with Redshift-like text and a SQLSTATE.

Concurrency: each thread gets its own DuckDB connection to the shared database (DuckDB's MVCC
isolates them); every connection gets the Redshift macros, settings and the ML functions.

Translations are cached: a query or DML statement seen before with the same parameters runs its
DuckDB SQL directly (parsing and typing a large statement with sqlglot costs tens of ms, a good part
of a scoring pass). Any other statement through the engine (DDL) empties the cache, as it may change
the types the translation depends on.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from local.redshift import catalog, functions
from local.redshift import copy as copy_command
from local.redshift import translate as tr
from local.redshift.errors import RedshiftError, from_duckdb
from local.redshift.streaming import StreamingManager

__all__ = ["Column", "Engine", "RedshiftError", "Result"]

log = logging.getLogger(__name__)


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


_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_RESULT_SETS = (exp.Query, exp.Show, exp.Describe, exp.Pragma, exp.Values)
_TXN_BEGIN = {"BEGIN", "START"}
_TXN_COMMIT = {"COMMIT", "END"}
_TXN_ROLLBACK = {"ROLLBACK", "ABORT"}
_TRANSLATIONS_KEPT = 256
# DuckDB settings for every query of the emulator. The build-side flip hashes the side with the smaller
# estimated cardinality, and the estimates of the feature definition are far off (feature_targets'
# filter on a subquery: ~4,800 rows estimated for 1.79M), so it hashed the wide joined rows and probed
# with the narrow per-transaction results in three 1.79M-row joins. Without it the join order
# optimizer's sides stand (measured, interleaved A/B in one session: whole-history features -9 % wall
# median, a 2,000-row scoring pass 236-253 -> 199-217 ms; see bench/features.py, bench/scoring.py).
DUCKDB_SETTINGS = {"disabled_optimizers": "build_side_probe_side"}


@dataclass(frozen=True)
class _Translation:
    """A statement translated to DuckDB, with what running it needs to know about the original."""

    duck_sql: str
    only_table: str | None  # the one table it names, for error messages
    counts_rows: bool  # DML or CREATE TABLE AS: Redshift reports the rows affected
    returns_rows: bool  # a query (or a command whose output is not DuckDB's Count row)
    is_command: bool  # sqlglot could not model it: passed through as is
    cacheable: bool  # a query or DML (DDL may change the schema the translation depends on)

    @classmethod
    def of(cls, expression: exp.Expression) -> _Translation:
        tables = {t.name for t in expression.find_all(exp.Table)}
        return cls(
            duck_sql=tr.to_duckdb(expression),
            only_table=next(iter(tables)) if len(tables) == 1 else None,
            counts_rows=isinstance(expression, _DML)
            or (
                isinstance(expression, exp.Create)
                and expression.expression is not None
                and expression.kind == "TABLE"
            ),
            returns_rows=isinstance(expression, _RESULT_SETS),
            is_command=isinstance(expression, exp.Command),
            cacheable=isinstance(expression, (*_DML, exp.Query)),
        )


class Engine:
    def __init__(self, path: str | Path = ":memory:", *, auto_refresh_interval: float | None = 1.0) -> None:
        self.path = str(path)
        self._db = duckdb.connect(self.path, config=DUCKDB_SETTINGS)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._connections: list[duckdb.DuckDBPyConnection] = []
        self._clock: datetime | None = None
        self._clock_version = 0
        self._clock_seen: dict[int, int] = {}  # connection id -> clock version it has applied
        self._translations: dict[tuple[str, tuple[tuple[str, str], ...]], _Translation] = {}
        self._schema_changes = 0  # DDL seen: a translation made before one is not kept
        self._closed = False
        catalog.install(self._db)
        self.ml: Any = None
        self.streaming = StreamingManager(self)
        self.ml = self._load_ml()
        self.streaming.start(auto_refresh_interval)

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB connection, with the Redshift functions and settings installed."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self.cursor()
            self._local.con = con
        return con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new, fully set-up connection owned by the caller (close it when done)."""
        with self._lock:
            if self._closed:
                raise RedshiftError("the emulator is shut down", "57P01")
            con = self._db.cursor()
            self._connections.append(con)
        functions.install(con)
        con.execute("SET integer_division = true")  # Redshift: INT / INT truncates
        con.execute(f"SET search_path = '{catalog.SEARCH_PATH}'")
        if self.ml is not None:
            self.ml.register_functions(con)
        return con

    def prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring a connection's view of the simulated clock up to date (cheap when unchanged)."""
        if self._clock_seen.get(id(con)) == self._clock_version:
            return
        clock = self._clock
        if clock is None:
            con.execute("SET VARIABLE emulator_clock = NULL::TIMESTAMP")
        else:
            con.execute("SET VARIABLE emulator_clock = ?::TIMESTAMP", [clock.replace(tzinfo=None)])
        self._clock_seen[id(con)] = self._clock_version

    # -- clock -------------------------------------------------------------------------------

    @property
    def clock(self) -> datetime | None:
        return self._clock

    def set_clock(self, now: datetime | None) -> None:
        """Make GETDATE()/SYSDATE/CURRENT_DATE return `now` (naive UTC) on every connection; None resets."""
        with self._lock:
            self._clock = now
            self._clock_version += 1

    # -- statements --------------------------------------------------------------------------

    def execute(self, sql: str, parameters: Mapping[str, str] | None = None) -> Result:
        """Run one statement (or a `;`-separated script, in one transaction); the last result."""
        return self.execute_batch([sql], parameters)[-1]

    def execute_batch(self, sqls: Sequence[str], parameters: Mapping[str, str] | None = None) -> list[Result]:
        """Run statements in one transaction: all or nothing. One Result per element of `sqls`."""
        con = self.connection()
        self.prepare(con)
        results: list[Result] = []
        schema_changes = self._schema_changes
        con.execute("BEGIN")
        try:
            for sql in sqls:
                result = Result()
                for statement in _split_statements(sql):
                    result = self._execute_statement(con, statement, parameters)
                results.append(result)
            con.execute("COMMIT")
        except RedshiftError as exc:
            _rollback(con)
            exc.statement_index = _failed_index(results, sqls)  # the Data API marks that sub-statement
            raise
        except duckdb.Error as exc:
            _rollback(con)
            error = from_duckdb(exc)
            error.statement_index = _failed_index(results, sqls)
            raise error from exc
        finally:
            if self._schema_changes != schema_changes:
                # translations made inside the batch saw its DDL before (or without) its commit
                self._forget_translations()
        return results

    def refresh(self, mv_name: str) -> int:
        """REFRESH MATERIALIZED VIEW from Python; returns the number of rows added."""
        return self.streaming.refresh(mv_name, refresh_type="Manual")

    def _execute_statement(
        self, con: duckdb.DuckDBPyConnection, sql: str, parameters: Mapping[str, str] | None
    ) -> Result:
        key = (sql, tuple(sorted((parameters or {}).items())))
        cached = self._translations.get(key)
        if cached is not None:
            return self._run(con, cached)
        return self._execute_new_statement(con, sql, parameters, key)

    def _execute_new_statement(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        parameters: Mapping[str, str] | None,
        key: tuple[str, tuple[tuple[str, str], ...]],
    ) -> Result:
        if self.ml is not None and self.ml.handles(sql):
            return self.ml.execute(sql, con)
        schema_changes = self._schema_changes
        words = tr.leading_words(sql, 4)
        head = words[0] if words else ""
        if head in _TXN_BEGIN:
            return Result()  # already inside the batch's transaction
        if head in _TXN_COMMIT:
            con.execute("COMMIT")
            con.execute("BEGIN")
            return Result()
        if head in _TXN_ROLLBACK:
            con.execute("ROLLBACK")
            con.execute("BEGIN")
            return Result()
        if head in {"SET", "RESET"} and len(words) > 1 and words[1] == "EMULATOR_CLOCK":
            return self._set_clock_statement(con, sql, head)
        if head == "COPY":
            return Result(rowcount=copy_command.run_copy(self, con, sql))
        if head == "REFRESH" and words[1:3] == ["MATERIALIZED", "VIEW"]:
            name = tr.parse_table_name(sql.split(None, 3)[3] if len(sql.split(None, 3)) > 3 else "")
            self.streaming.refresh(name, refresh_type="Manual")
            return Result()
        if head == "CREATE" and words[1:3] == ["EXTERNAL", "SCHEMA"]:
            self._forget_translations()  # the stream-source check depends on the external schemas
            self.streaming.create_external_schema(con, sql)
            return Result()
        if head == "SET":
            return Result()  # Redshift session settings (search_path, datestyle, ...): per session, ignored
        expression = tr.parse(sql)
        if isinstance(expression, exp.Create) and _is_materialized(expression):
            self._forget_translations()
            self.streaming.create_materialized_view(con, expression, sql)
            return Result()
        if isinstance(expression, exp.Drop):
            self._forget_translations()
            handled = self.streaming.drop(con, expression)
            if handled:
                return Result()
        expression = tr.rewrite(tr.bind_parameters(expression, parameters))
        if any(expression.find_all(exp.Avg, exp.Div)):
            expression = tr.apply_type_rules(expression, self._schema(con))
        self.streaming.check_not_stream_source(expression)
        translation = _Translation.of(expression)
        if not translation.cacheable:
            self._forget_translations()
        result = self._run(con, translation)
        if translation.cacheable:
            with self._lock:
                if self._schema_changes != schema_changes:
                    return result  # translated against a schema that may be gone
                if len(self._translations) >= _TRANSLATIONS_KEPT:
                    self._translations.pop(next(iter(self._translations)))  # the oldest
                self._translations[key] = translation
        return result

    def _forget_translations(self) -> None:
        with self._lock:  # never while another thread evicts the oldest
            self._translations.clear()
            self._schema_changes += 1

    def _schema(self, con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
        """Column types of every table and view, for the type-dependent Redshift rules."""
        schema: dict[str, dict[str, str]] = {}
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
        for table, column, data_type in rows:
            schema.setdefault(table, {})[column] = data_type
        return schema

    def _run(self, con: duckdb.DuckDBPyConnection, translation: _Translation) -> Result:
        try:
            con.execute(translation.duck_sql)
        except duckdb.Error as exc:
            raise from_duckdb(exc, translation.only_table) from exc
        if translation.counts_rows:
            row = con.fetchone()
            return Result(rowcount=int(row[0]) if row else 0)
        if con.description is None:
            return Result()
        passthrough = translation.is_command and [d[0] for d in con.description] != ["Count"]
        if not (translation.returns_rows or passthrough):
            con.fetchall()  # DDL reports a Count row; Redshift returns no result set
            return Result()
        columns = [_column(d[0], d[1]) for d in con.description]
        return Result(columns=columns, rows=con.fetchall())

    def _set_clock_statement(self, con: duckdb.DuckDBPyConnection, sql: str, head: str) -> Result:
        if head == "RESET":
            self.set_clock(None)
        else:
            literal = tr.parse(sql).find(exp.Literal)
            if literal is None or not literal.is_string:
                raise RedshiftError(
                    "SET emulator_clock needs a timestamp literal, e.g. '2018-10-01 12:00:00'", "22007"
                )
            try:
                self.set_clock(datetime.fromisoformat(literal.this))
            except ValueError as exc:
                raise RedshiftError(
                    f'invalid input syntax for type timestamp: "{literal.this}"', "22007"
                ) from exc
        self.prepare(con)
        return Result()

    # -- lifecycle ---------------------------------------------------------------------------

    def _load_ml(self) -> Any:
        try:
            from local.redshift.ml import ModelManager
        except ImportError as exc:
            if getattr(exc, "name", "") != "local.redshift.ml":
                log.warning("Redshift ML emulation unavailable: %s", exc)
            return None
        if self.path == ":memory:":
            data_dir = Path(tempfile.mkdtemp(prefix="redshift-models-"))
        else:
            data_dir = Path(self.path + ".models")
        data_dir.mkdir(parents=True, exist_ok=True)
        manager = ModelManager(self, data_dir)
        with self._lock:
            existing = list(self._connections)
        for con in existing:
            manager.register_functions(con)
        return manager

    def close(self) -> None:
        self.streaming.stop()
        if self.ml is not None:
            self.ml.close()
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for con in connections:
            try:
                con.close()
            except duckdb.Error:
                pass
        self._db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@functools.lru_cache(maxsize=_TRANSLATIONS_KEPT)
def _split_statements(sql: str) -> tuple[str, ...]:
    """tr.split_statements, remembered: a scoring pass sends the same large script every time."""
    return tuple(tr.split_statements(sql))


def _failed_index(done: list[Result], sqls: Sequence[str]) -> int:
    """The batch element that failed: the first not done (the last if COMMIT itself failed)."""
    return min(len(done), len(sqls) - 1)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction open (DuckDB already aborted it)


def _is_materialized(expression: exp.Create) -> bool:
    props = expression.args.get("properties")
    return bool(props and any(isinstance(p, exp.MaterializedProperty) for p in props.expressions))


_TYPE_NAMES = {
    "BOOLEAN": "bool",
    "TINYINT": "int2",
    "SMALLINT": "int2",
    "INTEGER": "int4",
    "BIGINT": "int8",
    "HUGEINT": "int8",  # DuckDB widens SUM(BIGINT); Redshift returns BIGINT
    "UTINYINT": "int2",
    "USMALLINT": "int4",
    "UINTEGER": "int8",
    "UBIGINT": "numeric",
    "FLOAT": "float4",
    "DOUBLE": "float8",
    "VARCHAR": "varchar",
    "DATE": "date",
    "TIME": "time",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "BLOB": "varbyte",
    "JSON": "super",
    "INTERVAL": "interval",
    "UUID": "varchar",
}


def _column(name: str, duck_type: Any) -> Column:
    type_text = str(duck_type).upper()
    if type_text.startswith("DECIMAL"):
        precision, scale = (int(x) for x in type_text[8:-1].split(","))
        return Column(name, "numeric", precision, scale)
    if type_text.startswith("TIMESTAMP") and "TIME ZONE" not in type_text:
        return Column(name, "timestamp")
    return Column(name, _TYPE_NAMES.get(type_text, "super" if type_text.endswith(("]", ")")) else "varchar"))
