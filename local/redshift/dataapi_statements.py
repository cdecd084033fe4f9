"""Statements of the Data API emulator: their lifecycle, the worker pool that runs them, cancellation.

A statement moves SUBMITTED -> PICKED -> STARTED -> FINISHED | FAILED | ABORTED, as on AWS.
Results are kept, encoded, for `retention_seconds` (AWS keeps them 24 hours).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb

from local.redshift.dataapi_results import EncodedResult, encode_result
from local.redshift.engine import Engine, RedshiftError, Result

ACTIVE = ("SUBMITTED", "PICKED", "STARTED")
DONE = ("FINISHED", "FAILED", "ABORTED")
CANCELLED_ERROR = "Query (%d) cancelled on user's request"
CANCEL_WAIT_SECONDS = 5.0


@dataclass
class SubStatement:
    id: str
    sql: str
    created_at: float
    updated_at: float
    status: str = "SUBMITTED"
    error: str | None = None
    duration_ns: int = -1
    query_id: int = 0
    has_result_set: bool = False
    result_rows: int = -1
    result: EncodedResult | None = None


@dataclass
class Statement:
    id: str
    subs: list[SubStatement]
    is_batch: bool
    parameters: list[dict[str, str]] | None
    connection: dict[str, str]  # Database, ClusterIdentifier | WorkgroupName, SecretArn, DbUser as given
    statement_name: str | None
    result_format: str
    created_at: float
    updated_at: float
    status: str = "SUBMITTED"
    error: str | None = None
    duration_ns: int = -1
    redshift_pid: int = 0
    cancel_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def query_string(self) -> str:
        return "; ".join(s.sql for s in self.subs) if self.is_batch else self.subs[0].sql

    @property
    def has_result_set(self) -> bool:
        return any(s.has_result_set for s in self.subs)

    @property
    def result_rows(self) -> int:
        return -1 if self.status in ACTIVE else sum(max(s.result_rows, 0) for s in self.subs)

    @property
    def result_size(self) -> int:
        return -1 if self.status in ACTIVE else sum(s.result.total_bytes for s in self.subs if s.result)


class ActiveStatementsExceeded(Exception):
    pass


class NotCancellable(Exception):
    pass


class StatementStore:
    """Runs statements on the engine in a worker pool and keeps them (and their results) by Id."""

    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = 4,
        max_active: int = 500,
        retention_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.max_active = max_active
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="redshift-data")
        self._lock = threading.Lock()
        self._statements: dict[str, Statement] = {}
        self._client_tokens: dict[str, str] = {}
        self._query_ids = itertools.count(100_000)
        self._pid = 1_073_000_000 + os.getpid() % 100_000
        self._cursors = _CursorTracker(engine)

    # -- submission ---------------------------------------------------------------------------

    def submit(
        self,
        sqls: Sequence[str],
        *,
        is_batch: bool,
        parameters: list[dict[str, str]] | None,
        connection: dict[str, str],
        statement_name: str | None,
        result_format: str,
        client_token: str | None = None,
    ) -> Statement:
        with self._lock:
            self._expire()
            if client_token and client_token in self._client_tokens:
                existing = self._statements.get(self._client_tokens[client_token])
                if existing is not None:
                    return existing  # idempotent retry: the same statement, not a second run
            active = sum(1 for s in self._statements.values() if s.status in ACTIVE)
            if active >= self.max_active:
                raise ActiveStatementsExceeded(
                    f"Active statements exceeded the allowed quota ({self.max_active})."
                )
            now = self._clock()
            statement_id = str(uuid.uuid4())
            subs = [
                SubStatement(f"{statement_id}:{n}" if is_batch else statement_id, sql, now, now)
                for n, sql in enumerate(sqls, start=1)
            ]
            statement = Statement(
                id=statement_id,
                subs=subs,
                is_batch=is_batch,
                parameters=parameters,
                connection=connection,
                statement_name=statement_name,
                result_format=result_format,
                created_at=now,
                updated_at=now,
                redshift_pid=self._pid,
            )
            self._statements[statement_id] = statement
            if client_token:
                self._client_tokens[client_token] = statement_id
        self._pool.submit(self._run, statement)
        return statement

    # -- lookup -------------------------------------------------------------------------------

    def get(self, statement_id: str) -> tuple[Statement, SubStatement | None] | None:
        """The statement for an Id; for `id:N` also its N-th sub-statement. None when unknown."""
        base, _, suffix = statement_id.partition(":")
        with self._lock:
            self._expire()
            statement = self._statements.get(base)
        if statement is None:
            return None
        if not suffix:
            return statement, None
        n = int(suffix) if suffix.isdigit() else 0
        if not statement.is_batch or not 1 <= n <= len(statement.subs):
            return None
        return statement, statement.subs[n - 1]

    def all(self) -> list[Statement]:
        with self._lock:
            self._expire()
            return list(self._statements.values())

    # -- cancellation -------------------------------------------------------------------------

    def cancel(self, statement: Statement) -> None:
        with self._lock:
            if statement.status in DONE:
                raise NotCancellable(f"Could not cancel a query that is already in {statement.status} state.")
            statement.cancel_requested = True
            if statement.status in ("SUBMITTED", "PICKED"):
                self._finish_aborted(statement)
                return
        # Repeat the interrupt until the statement ends: one sent before the engine opened its
        # cursor, or between two statements of a batch, would otherwise be lost.
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        self._cursors.interrupt(statement.id)
        while not statement.done.wait(0.01) and time.monotonic() < deadline:
            self._cursors.interrupt(statement.id)

    def shutdown(self) -> None:
        """Cancel what is queued or running (rolled back, as a dropped Redshift session would be)."""
        for statement in self.all():
            try:
                self.cancel(statement)
            except NotCancellable:
                pass  # ended meanwhile
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cursors.detach()

    # -- execution (worker threads) -----------------------------------------------------------

    def _run(self, statement: Statement) -> None:
        with self._lock:
            if statement.status != "SUBMITTED":
                return  # cancelled while queued
            self._set_status(statement, "PICKED")
            self._set_status(statement, "STARTED")
        params = {p["name"]: p["value"] for p in statement.parameters or []}
        started = time.perf_counter_ns()
        error: RedshiftError | None = None
        results: list[Result] = []
        try:
            with self._cursors.tracking(statement.id, lambda: statement.cancel_requested):
                results = self.engine.execute_batch([s.sql for s in statement.subs], params or None)
        except RedshiftError as exc:
            error = exc
        except Exception as exc:  # an engine bug must still end the statement, not hang its clients
            error = RedshiftError(f"ERROR: internal error: {type(exc).__name__}: {exc}", "XX000")
        elapsed = time.perf_counter_ns() - started
        encoded = [] if error else [encode_result(r, statement.result_format) for r in results]
        with self._lock:
            if statement.cancel_requested and error is not None:
                # Interrupted: the engine rolled back. (A cancel that came too late leaves it FINISHED.)
                self._finish_aborted(statement, elapsed)
            elif error is not None:
                self._finish_failed(statement, error, elapsed)
            else:
                self._finish_ok(statement, results, encoded, elapsed)

    def _set_status(self, statement: Statement, status: str) -> None:
        statement.status = status
        statement.updated_at = self._clock()
        for sub in statement.subs:
            sub.status, sub.updated_at = status, statement.updated_at

    def _finish_ok(
        self, statement: Statement, results: list[Result], encoded: list[EncodedResult], elapsed: int
    ) -> None:
        now = self._clock()
        per_sub = elapsed // max(len(statement.subs), 1)
        for sub, result, enc in zip(statement.subs, results, encoded, strict=True):
            sub.updated_at, sub.duration_ns = now, per_sub
            sub.query_id = next(self._query_ids)
            sub.has_result_set = result.has_result_set
            sub.result_rows = len(result.rows) if result.has_result_set else max(result.rowcount, 0)
            sub.result = enc if result.has_result_set else None
            sub.status = "FINISHED"  # last: readers do not take the lock, FINISHED means all is there
        statement.updated_at, statement.duration_ns = now, elapsed
        statement.status = "FINISHED"
        statement.done.set()

    def _finish_failed(self, statement: Statement, error: RedshiftError, elapsed: int) -> None:
        now = self._clock()
        # The Data API shows the server's message with its severity, e.g. `ERROR: relation "t" does not exist`.
        message = error.message if error.message.startswith("ERROR:") else f"ERROR: {error.message}"
        # Which statement of a batch failed, if the engine says so; the ones before it ran and were
        # rolled back with the transaction, the ones after never started.
        failed_at = getattr(error, "statement_index", None)
        if not isinstance(failed_at, int) or not 0 <= failed_at < len(statement.subs):
            failed_at = len(statement.subs) - 1 if len(statement.subs) == 1 else None
        for n, sub in enumerate(statement.subs):
            sub.updated_at = now
            if failed_at is None or n == failed_at:
                sub.error, sub.query_id = message, next(self._query_ids)
                sub.status = "FAILED"
            elif n < failed_at:
                sub.query_id = next(self._query_ids)
                sub.status = "FINISHED"
            else:
                sub.status = "ABORTED"
        statement.error, statement.updated_at, statement.duration_ns = message, now, elapsed
        statement.status = "FAILED"  # last: readers do not take the lock
        statement.done.set()

    def _finish_aborted(self, statement: Statement, elapsed: int = -1) -> None:
        now = self._clock()
        for sub in statement.subs:
            sub.status, sub.updated_at = "ABORTED", now
        statement.error = CANCELLED_ERROR % next(self._query_ids)
        statement.updated_at, statement.duration_ns = now, elapsed
        statement.status = "ABORTED"
        statement.done.set()

    def _expire(self) -> None:
        cutoff = self._clock() - self.retention_seconds
        expired = [k for k, s in self._statements.items() if s.status in DONE and s.updated_at < cutoff]
        for key in expired:
            del self._statements[key]
        if expired:
            live = set(self._statements)
            self._client_tokens = {t: i for t, i in self._client_tokens.items() if i in live}


class _CursorTracker:
    """Finds the DuckDB connection a statement runs on, so CancelStatement can interrupt it.

    Adapter over the engine's public `connection()` / `cursor()`: the engine takes the connection
    for a statement in the calling (worker) thread, so wrapping these on this engine instance tells
    us which connection runs which statement. DuckDB's `interrupt()` then stops the query and the
    engine rolls the transaction back.
    """

    def __init__(self, engine: Engine) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cursors: dict[str, list[Any]] = {}
        self._engine = engine
        self._wrapped: list[tuple[str, Any, Any]] = []  # (name, what was there before, our wrapper)
        for name in ("connection", "cursor"):
            if callable(getattr(engine, name, None)):
                wrapper = self._tracked(getattr(engine, name))
                self._wrapped.append((name, vars(engine).get(name), wrapper))
                setattr(engine, name, wrapper)

    def detach(self) -> None:
        """Give the engine its methods back (a later server on the same engine wraps them again)."""
        for name, previous, wrapper in reversed(self._wrapped):
            if vars(self._engine).get(name) is wrapper:
                if previous is None:
                    delattr(self._engine, name)
                else:
                    setattr(self._engine, name, previous)
        self._wrapped.clear()

    def _tracked(self, open_connection: Callable[..., Any]) -> Callable[..., Any]:
        def tracked(*args: Any, **kwargs: Any) -> Any:
            con = open_connection(*args, **kwargs)
            statement_id = getattr(self._local, "statement_id", None)
            if statement_id is not None:
                with self._lock:
                    self._cursors.setdefault(statement_id, []).append(con)
            return con

        return tracked

    @contextlib.contextmanager
    def tracking(self, statement_id: str, cancelled: Callable[[], bool]) -> Iterator[None]:
        """Record the connections the engine takes for `statement_id` in this thread while inside."""
        self._local.statement_id = statement_id
        try:
            yield
        finally:
            self._local.statement_id = None
            with self._lock:  # after this, no interrupt can reach these connections
                connections = self._cursors.pop(statement_id, [])
            if cancelled():
                for con in connections:
                    _end_aborted_transaction(con)

    def interrupt(self, statement_id: str) -> None:
        with self._lock:  # held while interrupting: see tracking()
            for con in self._cursors.get(statement_id, ()):
                try:
                    con.interrupt()
                except duckdb.Error:
                    pass  # closed: the statement ended on its own


def _end_aborted_transaction(con: Any) -> None:
    """An interrupt that lands on the engine's own ROLLBACK leaves the (reused, per-thread) connection
    in an aborted transaction; end it so the next statement on this worker starts clean."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was active: the engine's rollback went through
