"""Streaming ingestion: external schemas over Kinesis, materialized views, refresh and AUTO REFRESH.

A streaming MV is a DuckDB table plus a catalog row holding its query, translated to run over one
batch of Kinesis records (`__stream_batch`, an Arrow table with Redshift's stream columns). A refresh
reads every shard from its checkpoint with GetRecords, then, per round of reads, runs the view's query
over the whole batch inside DuckDB (vectorised) and appends the rows together with the new per-shard
checkpoints in ONE transaction: a crash between refreshes neither loses nor duplicates a record.
Records the view's WHERE rejects are counted (SYS_STREAM_SCAN_STATES.skipped_rows) and listed with a
reason (SYS_STREAM_SCAN_ERRORS); a record whose projection fails (e.g. a cast) is isolated by
bisection, listed with the error, and skipped, so one bad record never stops ingestion.

A non-streaming MV is a stored query recomputed on REFRESH.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import botocore.utils
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from sqlglot import exp

from local.redshift import catalog
from local.redshift import translate as tr
from local.redshift.errors import RedshiftError, from_duckdb
from local.redshift.functions import JSON_TEXT_LIMIT, JSON_TEXT_LIMIT_ERROR

if TYPE_CHECKING:
    from local.redshift.engine import Engine

log = logging.getLogger(__name__)

BATCH_TABLE = "__stream_batch"
GET_RECORDS_LIMIT = 10_000
DROP_GRACE_SECONDS = 10.0  # AUTO REFRESH leaves a just-dropped MV alone while the drop commits
INGEST_BATCH = 50_000  # records appended per transaction at most, when the reader is far ahead
SHARD_LIST_TTL = 60.0  # seconds a stream's shard list is reused
READ_THREADS = 8  # GetRecords calls in flight at once (one per shard of a round)
ITERATOR_TTL = 240.0  # seconds a kept shard iterator is reused (Kinesis expires them after 5 minutes)
SHARED_READ_TTL = 10.0  # seconds a GetRecords response is offered to the stream's other views
STREAM_SCHEMA = pa.schema(
    [
        ("approximate_arrival_timestamp", pa.timestamp("us")),
        ("partition_key", pa.string()),
        ("shard_id", pa.string()),
        ("sequence_number", pa.string()),
        ("refresh_time", pa.timestamp("us")),
        ("kinesis_data", pa.binary()),
    ]
)
# Why the view's WHERE dropped a record, in the words an operator reads in SYS_STREAM_SCAN_ERRORS.
_DROP_REASON = (
    """CASE WHEN NOT is_utf8(kinesis_data) THEN 1 WHEN NOT can_json_parse(kinesis_data) THEN 2 ELSE 3 END"""
)
_DROP_TEXT = {
    1: "Record is not valid UTF-8",
    2: "Record is not valid JSON",
    3: "Record rejected by the materialized view's WHERE clause",
}
_EXTERNAL_SCHEMA = re.compile(
    r"^\s*CREATE\s+EXTERNAL\s+SCHEMA\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>\"[^\"]+\"|[\w$]+)\s+"
    r"FROM\s+(?P<source>\w+)(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_IAM_ROLE = re.compile(r"IAM_ROLE\s+(?:'(?P<arn>[^']*)'|(?P<default>default))", re.IGNORECASE)


@dataclass
class _View:
    name: str
    kind: str  # streaming | regular
    auto_refresh: bool
    query_sql: str
    filter_sql: str | None
    external_schema: str | None
    stream_name: str | None


class SharedReads:
    """Recent GetRecords responses of each shard, keyed by the sequence number they follow, so that
    the views over one stream (the transactions and their rejects) fetch each record from Kinesis
    once: a view whose checkpoint another view's read started from takes that response (and its next
    iterator) instead of asking again. Records after a position never change (a stream only grows),
    so a shared response is exactly what the view's own read would have returned then; the view then
    reads on from its next iterator as usual. Each view keeps its own checkpoints and transactions."""

    def __init__(self, ttl_s: float = SHARED_READ_TTL) -> None:
        self.ttl_s = ttl_s
        self._responses: OrderedDict[tuple[str, str, str | None], tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, stream: str, shard_id: str, after: str | None) -> dict | None:
        with self._lock:
            self._expire()
            entry = self._responses.get((stream, shard_id, after))
            if entry is None:
                return None
            self.hits += 1
            return entry[1]

    def put(self, stream: str, shard_id: str, after: str | None, response: dict) -> None:
        if not response["Records"]:
            return  # nothing to share; the next read would be asked of Kinesis anyway
        with self._lock:
            self._responses[(stream, shard_id, after)] = (time.monotonic(), response)
            self._expire()

    def _expire(self) -> None:
        oldest = time.monotonic() - self.ttl_s
        while self._responses and next(iter(self._responses.values()))[0] < oldest:
            self._responses.popitem(last=False)


class StreamingManager:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._client_lock = threading.Lock()
        self._clients: dict[tuple[str | None, str | None], Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker = threading.local()
        self._dropped: dict[str, float] = {}  # MV name -> when a DROP of it ran (monotonic seconds)
        self._shard_ids: dict[str, tuple[float, list[str]]] = {}  # stream -> (listed at, shard ids)
        self._refreshed: dict[str, float] = {}  # MV name -> when its last refresh succeeded (monotonic)
        self._reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="kinesis-read")
        # (MV, shard) -> (sequence number the iterator follows, iterator, obtained at); see _iterator
        self._positions: dict[tuple[str, str], tuple[str | None, str, float]] = {}
        self.shared_reads = SharedReads()

    # -- external schemas -----------------------------------------------------------------

    def create_external_schema(self, con: duckdb.DuckDBPyConnection, sql: str) -> None:
        match = _EXTERNAL_SCHEMA.match(sql)
        if not match:
            raise RedshiftError('syntax error at or near "EXTERNAL"', "42601")
        name = match["name"].strip('"').lower()
        source = match["source"].upper()
        if source != "KINESIS":
            raise RedshiftError(
                f"external schema FROM {source} is not supported by the local emulator", "0A000"
            )
        role = _IAM_ROLE.search(match["rest"])
        if role is None:
            raise RedshiftError("IAM_ROLE must be specified for a Kinesis external schema", "42601")
        exists = con.execute(
            f"SELECT 1 FROM {catalog.SCHEMA}.external_schemas WHERE schema_name = ? "
            "UNION ALL SELECT 1 FROM duckdb_schemas() WHERE schema_name = ?",
            [name, name],
        ).fetchone()
        if exists:
            if match["ine"]:
                return
            raise RedshiftError(f'schema "{name}" already exists', "42P06")
        con.execute(
            f"INSERT INTO {catalog.SCHEMA}.external_schemas VALUES (?, 'kinesis', ?, ?)",
            [name, role["arn"] or "default", _utcnow()],
        )

    def _external_schemas(self, con: duckdb.DuckDBPyConnection) -> set[str]:
        rows = con.execute(f"SELECT schema_name FROM {catalog.SCHEMA}.external_schemas").fetchall()
        return {r[0] for r in rows}

    def check_not_stream_source(self, expression: exp.Expression) -> None:
        """Streams are read only through a materialized view, as on Redshift."""
        qualified = [t for t in expression.find_all(exp.Table) if t.db]
        if not qualified:
            return
        schemas = self._external_schemas(self.engine.connection())
        for table in qualified:
            if table.db and table.db.lower() in schemas:
                raise RedshiftError(
                    f'relation "{table.db}.{table.name}" is a Kinesis stream: query it through a '
                    "streaming materialized view",
                    "0A000",
                )

    # -- materialized views ----------------------------------------------------------------

    def create_materialized_view(self, con: duckdb.DuckDBPyConnection, create: exp.Create, sql: str) -> None:
        name = tr.table_key(create.this if isinstance(create.this, exp.Table) else create.this.this)
        query = create.expression
        if query is None:
            raise RedshiftError("CREATE MATERIALIZED VIEW needs AS SELECT ...", "42601")
        auto = any(
            isinstance(p, exp.AutoRefreshProperty) and str(p.this).upper() in ("YES", "TRUE")
            for p in create.args["properties"].expressions
        )
        if con.execute(
            f"SELECT 1 FROM {catalog.SCHEMA}.materialized_views WHERE mv_name = ?", [name]
        ).fetchone():
            raise RedshiftError(f'relation "{name}" already exists', "42P07")
        schemas = self._external_schemas(con)
        sources = [t for t in query.find_all(exp.Table) if t.db and t.db.lower() in schemas]
        stream_name = (
            sources[0].name if sources else None
        )  # before case folding: Kinesis names are case-sensitive
        query = tr.rewrite(query)
        if sources:
            self._create_streaming(con, name, query, sources, stream_name, auto, sql)
        else:
            query_sql = tr.to_duckdb(query)
            self._run(con, f"CREATE TABLE {_quote(name)} AS {query_sql}", query)
            self._record_view(con, name, "regular", auto, sql, query_sql, None, None, None)

    def _create_streaming(self, con: duckdb.DuckDBPyConnection, name: str, query: exp.Expression,
                          sources: list[exp.Table], stream_name: str, auto: bool, sql: str) -> None:  # fmt: skip
        if (
            len(sources) != 1
            or len(list(query.find_all(exp.Table))) != 1
            or not isinstance(query, exp.Select)
        ):
            raise RedshiftError(
                "a streaming materialized view must select from exactly one stream, without joins", "0A000"
            )
        source = sources[0]
        schema_name = source.db.lower()
        self._describe_stream(stream_name)
        alias = source.alias_or_name
        source.replace(exp.to_table(BATCH_TABLE))
        where = query.args.get("where")
        filter_sql = where.this.sql(dialect="duckdb") if where else None
        query_sql = tr.to_duckdb(_share_json_parsing(query, alias))
        con.register(BATCH_TABLE, STREAM_SCHEMA.empty_table())
        try:
            self._run(con, f"CREATE TABLE {_quote(name)} AS {query_sql}", query)
        finally:
            con.unregister(BATCH_TABLE)
        self._record_view(con, name, "streaming", auto, sql, query_sql, filter_sql, schema_name, stream_name)
        self._dropped.pop(name, None)  # re-created: AUTO REFRESH applies again

    def _record_view(self, con: duckdb.DuckDBPyConnection, name: str, kind: str, auto: bool, sql: str,
                     query_sql: str, filter_sql: str | None, schema: str | None, stream: str | None) -> None:  # fmt: skip
        con.execute(
            f"INSERT INTO {catalog.SCHEMA}.materialized_views VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, kind, auto, sql, query_sql, filter_sql, schema, stream, _utcnow()],
        )

    def _run(self, con: duckdb.DuckDBPyConnection, duck_sql: str, query: exp.Expression) -> None:
        try:
            con.execute(duck_sql)
        except duckdb.Error as exc:
            tables = {t.name for t in query.find_all(exp.Table)} - {BATCH_TABLE}
            raise from_duckdb(exc, next(iter(tables)) if len(tables) == 1 else None) from exc

    def drop(self, con: duckdb.DuckDBPyConnection, drop: exp.Drop) -> bool:
        """DROP MATERIALIZED VIEW / DROP SCHEMA of an external schema; False if not ours to handle."""
        kind = (drop.args.get("kind") or "").upper()
        target = drop.this or next(iter(drop.args.get("tables") or []), None)
        if target is None:
            return False
        if kind == "SCHEMA":
            name = (target.db or target.name).lower()
            if name not in self._external_schemas(con):
                return False
            con.execute(f"DELETE FROM {catalog.SCHEMA}.external_schemas WHERE schema_name = ?", [name])
            return True
        if kind == "VIEW" and drop.args.get("materialized"):
            name = tr.table_key(target)
            if not con.execute(
                f"SELECT 1 FROM {catalog.SCHEMA}.materialized_views WHERE mv_name = ?", [name]
            ).fetchone():
                if drop.args.get("exists"):
                    return True
                raise RedshiftError(f'materialized view "{name}" does not exist', "42P01")
            with self._lock_for(name):
                # The drop commits with the caller's transaction, after this lock is released: keep
                # AUTO REFRESH off the view meanwhile (it resumes if that transaction rolls back).
                self._dropped[name] = time.monotonic()
                self._positions = {k: v for k, v in self._positions.items() if k[0] != name}
                con.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
                for table in ("materialized_views", "stream_checkpoints"):
                    con.execute(f"DELETE FROM {catalog.SCHEMA}.{table} WHERE mv_name = ?", [name])
            return True
        return False

    def _view(self, con: duckdb.DuckDBPyConnection, name: str) -> _View:
        row = con.execute(
            f"SELECT mv_name, kind, auto_refresh, query_sql, filter_sql, external_schema, stream_name "
            f"FROM {catalog.SCHEMA}.materialized_views WHERE mv_name = ?",
            [name],
        ).fetchone()
        if row is None:
            raise RedshiftError(f'materialized view "{name}" does not exist', "42P01")
        return _View(*row)

    # -- refresh ----------------------------------------------------------------------------

    def refresh(self, name: str, refresh_type: str = "Manual") -> int:
        """Bring one MV up to date; returns the number of rows appended (or recomputed)."""
        con = self._connection()
        self.engine.prepare(con)
        view = self._view(con, tr.parse_table_name(name))
        with self._lock_for(view.name):
            started = _utcnow()
            try:
                if view.kind == "streaming":
                    added = self._refresh_streaming(con, view)
                else:
                    added = self._refresh_regular(con, view)
            except Exception as exc:
                self._history(con, view, refresh_type, f"Refresh failed: {exc}"[:500], started)
                if isinstance(exc, RedshiftError):
                    raise
                if isinstance(exc, duckdb.Error):
                    raise from_duckdb(exc) from exc
                raise RedshiftError(f"materialized view refresh failed: {exc}", "XX000") from exc
            self._refreshed[view.name] = time.monotonic()
            status = "Refresh successfully updated MV incrementally" if added else "MV was already updated"
            if view.kind == "regular":
                status = "Refresh successfully recomputed MV from scratch"
            self._history(con, view, refresh_type, status, started)
            return added

    def _refresh_regular(self, con: duckdb.DuckDBPyConnection, view: _View) -> int:
        con.execute("BEGIN")
        try:
            con.execute(f"DELETE FROM {_quote(view.name)}")
            added = con.execute(f"INSERT INTO {_quote(view.name)} {view.query_sql}").fetchone()[0]
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        return int(added)

    def _refresh_streaming(self, con: duckdb.DuckDBPyConnection, view: _View) -> int:
        kinesis = self._kinesis()
        checkpoints = dict(
            con.execute(
                f"SELECT shard_id, sequence_number FROM {catalog.SCHEMA}.stream_checkpoints WHERE mv_name = ?",
                [view.name],
            ).fetchall()
        )
        iterators = {
            shard_id: self._iterator(kinesis, view, shard_id, checkpoints.get(shard_id))
            for shard_id in self._shards(kinesis, view.stream_name)
        }
        positions: dict[str, tuple[str | None, str]] = {}  # shard -> (last sequence read, next iterator)
        # A reader thread walks the shards (one GetRecords per open shard per round) and hands each
        # response over; this thread appends every INGEST_BATCH records while the reader goes on, so
        # a large backlog's DuckDB work overlaps its reads, and the rest when reading ends: a refresh
        # that finds each shard's few new records in one read commits them in one transaction (each
        # transaction's bookkeeping costs as much as appending a thousand records).
        # Batches are committed in order, each with the checkpoints of the records it holds, so
        # exactly-once holds; each has its own refresh_time, so a consumer's watermark on
        # refresh_time never skips a batch committed after it looked.
        responses: queue.Queue = queue.Queue(maxsize=8)
        stop = threading.Event()

        def read() -> None:
            try:
                while iterators and not stop.is_set():
                    shard_round = list(iterators.items())
                    # the round's GetRecords calls at once: their waits on the Kinesis endpoint overlap
                    fetched = self._reads.map(
                        lambda item: self._read_shard(
                            kinesis, view, item[0], item[1], checkpoints, positions
                        ),
                        shard_round,
                    )
                    for (shard_id, _), (response, shared) in zip(shard_round, fetched, strict=True):
                        records = response["Records"]
                        next_iterator = response.get("NextShardIterator")
                        # a shared response is as old as the other view's read: read on from it
                        caught_up = not shared and (
                            not records
                            or (
                                response.get("MillisBehindLatest", 0) == 0
                                and len(records) < GET_RECORDS_LIMIT
                            )
                        )
                        if next_iterator is None or caught_up:
                            del iterators[shard_id]
                        else:
                            iterators[shard_id] = next_iterator
                        if next_iterator is not None:
                            last = records[-1]["SequenceNumber"] if records else None
                            positions[shard_id] = (last or positions.get(shard_id, (None,))[0], next_iterator)
                        if records:
                            responses.put((shard_id, records))
                        if stop.is_set():
                            return
                responses.put(None)
            except BaseException as exc:  # handed to the consumer, which raises it
                responses.put(exc)

        reader = threading.Thread(target=read, name=f"kinesis-read-{view.name}", daemon=True)
        reader.start()
        added, batch, count = 0, defaultdict(list), 0
        try:
            while True:
                item = responses.get()
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    batch[item[0]].extend(item[1])
                    count += len(item[1])
                if count and (item is None or count >= INGEST_BATCH):
                    added += self._ingest(con, view, dict(batch), _utcnow())
                    batch, count = defaultdict(list), 0
                if item is None:
                    self._remember(view, checkpoints, positions)
                    return added
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                try:
                    responses.get(timeout=0.05)
                except queue.Empty:
                    pass

    def _ingest(
        self, con: duckdb.DuckDBPyConnection, view: _View, batch: dict[str, list], refresh_time: datetime
    ) -> int:
        """Append one round of records and the shards' new checkpoints in one transaction."""
        table = _arrow_batch(batch, refresh_time)
        failures: list[tuple[int, str]] = []
        while True:
            keep = table if not failures else table.filter(pa.array(_mask(len(table), failures)))
            con.register(BATCH_TABLE, keep)
            con.execute("BEGIN")
            try:
                added = con.execute(f"INSERT INTO {_quote(view.name)} {view.query_sql}").fetchone()[0]
                self._record_scan(con, view, table, batch, failures)
                con.execute("COMMIT")
                return int(added)
            except duckdb.Error:
                _rollback(con)
                if failures:
                    raise  # bisection found the bad records already; this is something else
                failures = self._find_failures(con, view, table)
                if not failures:
                    raise
            except BaseException:
                _rollback(con)  # interrupted: neither the rows nor the checkpoints are kept
                raise
            finally:
                con.unregister(BATCH_TABLE)

    def _find_failures(
        self, con: duckdb.DuckDBPyConnection, view: _View, table: pa.Table
    ) -> list[tuple[int, str]]:
        """Bisect a batch to the single records whose projection fails; (row index, error) each."""
        failures: list[tuple[int, str]] = []

        def check(offset: int, length: int) -> None:
            con.register(BATCH_TABLE, table.slice(offset, length))
            try:
                con.execute(f"SELECT * FROM ({view.query_sql})").fetchall()
                return
            except duckdb.Error as exc:
                if length == 1:
                    failures.append((offset, from_duckdb(exc).message))
                    return
            finally:
                con.unregister(BATCH_TABLE)
            half = length // 2
            check(offset, half)
            check(offset + half, length - half)

        check(0, len(table))
        return failures

    def _record_scan(self, con: duckdb.DuckDBPyConnection, view: _View, table: pa.Table,
                     batch: dict[str, list], failures: list[tuple[int, str]]) -> None:  # fmt: skip
        """Scan states, rejected records and checkpoints of one round (in the round's transaction).

        Rejected records are found by DuckDB over the registered batch, shard statistics by Arrow, and
        each table gets ONE statement: this runs on every round of every refresh, where each extra
        DuckDB statement costs milliseconds.
        """
        now = _utcnow()
        query_id = catalog.next_query_id(con)
        ident = [view.external_schema, view.stream_name, view.name, query_id, query_id]
        errors = f"{catalog.SCHEMA}.sys_stream_scan_errors"
        skipped: Counter[str] = Counter()
        if view.filter_sql:
            reason_text = " ".join(
                f"WHEN {code} THEN '{text.replace(chr(39), chr(39) * 2)}'"
                for code, text in _DROP_TEXT.items()
            )
            rejected = con.execute(
                f"INSERT INTO {errors} SELECT ?, ?, ?, ?, ?, 'A', approximate_arrival_timestamp, ?::TIMESTAMP, "
                f"shard_id, sequence_number, code, CASE code {reason_text} END FROM (SELECT *, {_DROP_REASON} AS code "
                f"FROM {BATCH_TABLE} WHERE NOT coalesce(({view.filter_sql}), false)) RETURNING partition_id",
                [*ident, now],
            ).fetchall()
            skipped.update(shard_id for (shard_id,) in rejected)
        if failures:  # rare: records whose projection failed, found by bisection
            columns = table.select(["shard_id", "sequence_number", "approximate_arrival_timestamp"])
            rows = columns.to_pylist()
            failed = [(rows[i], message) for i, message in failures]
            con.executemany(
                f"INSERT INTO {errors} VALUES (?, ?, ?, ?, ?, 'A', ?, ?, ?, ?, 4, ?)",
                [[*ident, r["approximate_arrival_timestamp"], now, r["shard_id"], r["sequence_number"], m[:128]]
                 for r, m in failed],
            )  # fmt: skip
            skipped.update(r["shard_id"] for r, _ in failed)
        stats = _shard_stats(table)  # over every record read, failed ones included
        states, checkpoints = [], []
        for shard_id, records in batch.items():
            if not records:
                continue
            last = records[-1]["SequenceNumber"]
            states += [*ident, now, shard_id, last, len(records), skipped[shard_id], *stats[shard_id]]
            checkpoints += [view.name, shard_id, last, now]
        rows = len(checkpoints) // 4
        con.execute(
            f"INSERT INTO {catalog.SCHEMA}.sys_stream_scan_states VALUES "
            + ", ".join([f"({', '.join(['?'] * 13)})"] * rows),
            states,
        )
        con.execute(
            f"INSERT OR REPLACE INTO {catalog.SCHEMA}.stream_checkpoints VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * rows),
            checkpoints,
        )

    def _history(
        self, con: duckdb.DuckDBPyConnection, view: _View, refresh_type: str, status: str, started: datetime
    ) -> None:
        ended = _utcnow()
        try:
            con.execute(
                f"INSERT INTO {catalog.SCHEMA}.sys_mv_refresh_history VALUES "
                "(100, 0, nextval('redshift_sys.query_ids'), 'dev', 'public', 0, ?, ?, ?, ?, ?, ?)",
                [
                    view.name,
                    refresh_type,
                    status,
                    started,
                    ended,
                    int((ended - started).total_seconds() * 1e6),
                ],
            )
        except duckdb.Error:
            log.exception("could not record the refresh of %s", view.name)

    # -- Kinesis ----------------------------------------------------------------------------

    def _kinesis(self) -> Any:
        """A Kinesis client for the current endpoint settings (AWS_ENDPOINT_URL_KINESIS honoured by boto3)."""
        key = (
            os.environ.get("AWS_ENDPOINT_URL_KINESIS") or os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get("AWS_DEFAULT_REGION"),
        )
        with self._client_lock:
            if key not in self._clients:
                session = botocore.session.get_session()
                # GetRecords carries a timestamp per record; botocore's default parser converts each to
                # local time through dateutil, over half of the refresh's CPU at 1,000 records/s.
                session.get_component("response_parser_factory").set_parser_defaults(
                    timestamp_parser=_utc_timestamp
                )
                self._clients[key] = boto3.session.Session(botocore_session=session).client("kinesis")
            return self._clients[key]

    def _describe_stream(self, stream_name: str) -> None:
        kinesis = self._kinesis()
        try:
            kinesis.describe_stream_summary(StreamName=stream_name)
        except kinesis.exceptions.ResourceNotFoundException as exc:
            raise RedshiftError(f'stream "{stream_name}" does not exist in Kinesis', "42P01") from exc
        except Exception as exc:  # endpoint down, credentials: say so, plainly
            raise RedshiftError(f'cannot reach Kinesis stream "{stream_name}": {exc}', "XX000") from exc

    def _shards(self, kinesis: Any, stream_name: str) -> list[str]:
        """The stream's shard ids, listed again after SHARD_LIST_TTL (refreshes run every second)."""
        cached = self._shard_ids.get(stream_name)
        if cached is not None and time.monotonic() - cached[0] < SHARD_LIST_TTL:
            return cached[1]
        shards, token = [], None
        while True:
            response = (
                kinesis.list_shards(NextToken=token) if token else kinesis.list_shards(StreamName=stream_name)
            )
            shards.extend(shard["ShardId"] for shard in response["Shards"])
            token = response.get("NextToken")
            if not token:
                self._shard_ids[stream_name] = (time.monotonic(), shards)
                return shards

    def _iterator(self, kinesis: Any, view: _View, shard_id: str, checkpoint: str | None) -> str:
        """Where to read a shard from: the iterator the last refresh ended with when it still stands at
        the committed checkpoint (one GetShardIterator call saved per shard and refresh), else a new one."""
        kept = self._positions.get((view.name, shard_id))
        if kept is not None and kept[0] == checkpoint and time.monotonic() - kept[2] < ITERATOR_TTL:
            return kept[1]
        if checkpoint is not None:
            return kinesis.get_shard_iterator(
                StreamName=view.stream_name, ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=checkpoint,
            )["ShardIterator"]  # fmt: skip
        return kinesis.get_shard_iterator(
            StreamName=view.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def _read_shard(
        self,
        kinesis: Any,
        view: _View,
        shard_id: str,
        iterator: str,
        checkpoints: dict[str, str],
        positions: dict[str, tuple[str | None, str]],
    ) -> tuple[dict, bool]:
        """The shard's next records for this view: (response, whether another view's read gave it)."""
        after = positions[shard_id][0] if shard_id in positions else checkpoints.get(shard_id)
        shared = self.shared_reads.get(view.stream_name, shard_id, after)
        if shared is not None:
            return shared, True
        response = self._get_records(kinesis, view, shard_id, iterator, checkpoints)
        self.shared_reads.put(view.stream_name, shard_id, after, response)
        return response, False

    def _get_records(
        self, kinesis: Any, view: _View, shard_id: str, iterator: str, checkpoints: dict[str, str]
    ) -> dict:
        try:
            return kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        except kinesis.exceptions.ExpiredIteratorException:  # a kept iterator outlived Kinesis' 5 minutes
            self._positions.pop((view.name, shard_id), None)
            fresh = self._iterator(kinesis, view, shard_id, checkpoints.get(shard_id))
            return kinesis.get_records(ShardIterator=fresh, Limit=GET_RECORDS_LIMIT)

    def _remember(
        self, view: _View, checkpoints: dict[str, str], positions: dict[str, tuple[str | None, str]]
    ) -> None:
        """Keep each shard's next iterator with the sequence number it follows (the checkpoint this
        refresh committed), once every batch of the refresh is committed."""
        now = time.monotonic()
        for shard_id, (last, iterator) in positions.items():
            self._positions[(view.name, shard_id)] = (last or checkpoints.get(shard_id), iterator, now)

    # -- AUTO REFRESH -----------------------------------------------------------------------

    def start(self, interval: float | None) -> None:
        """Start the AUTO REFRESH thread (interval in seconds; None or 0 disables it)."""
        if not interval or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._auto_refresh, args=(interval,), name="mv-auto-refresh", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop AUTO REFRESH and the read threads (the engine is closing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._reads.shutdown(wait=False)

    def _auto_refresh(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                names = [r[0] for r in self._connection().execute(
                    f"SELECT mv_name FROM {catalog.SCHEMA}.materialized_views WHERE auto_refresh AND kind = 'streaming'"
                ).fetchall()]  # fmt: skip
            except duckdb.Error:
                log.exception("auto refresh: cannot read the catalog")
                continue
            for name in names:
                if self._stop.is_set():
                    return
                if time.monotonic() - self._dropped.get(name, -1e9) < DROP_GRACE_SECONDS:
                    continue
                if time.monotonic() - self._refreshed.get(name, -1e9) < interval:
                    continue  # a manual REFRESH (e.g. score_and_alert's, every cycle) just did it
                try:
                    self.refresh(name, refresh_type="Auto")
                except Exception as exc:  # recorded in SYS_MV_REFRESH_HISTORY; the next tick retries
                    log.warning("auto refresh of %s failed: %s", name, exc)
                    time.sleep(0)

    # -- helpers ----------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """A per-thread connection used only for refreshes (never inside a caller's open transaction)."""
        con = getattr(self._worker, "con", None)
        if con is None:
            con = self.engine.cursor()
            self._worker.con = con
        return con

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[name]


def _share_json_parsing(query: exp.Select, alias: str) -> exp.Select:
    """Parse each record's JSON once instead of once per field.

    `json_extract_path_text(doc, 'A')`, `(doc, 'B')`, ... over one document become elements of a single
    multi-path extraction computed (after the view's WHERE) in a subquery: same values, one parse.
    Views that do not have that shape are returned unchanged.
    """
    calls = [
        c for c in query.find_all(exp.Anonymous)
        if c.name.lower() == "redshift_json_text" and len(c.expressions) == 2 and c.expressions[1].is_string
    ]  # fmt: skip
    where = query.args.get("where")
    in_where = {id(c) for c in where.find_all(exp.Anonymous)} if where else set()
    documents = {c.expressions[0].sql(dialect="duckdb") for c in calls}
    if len(calls) < 2 or len(documents) != 1 or any(id(c) in in_where for c in calls):
        return query
    paths = sorted({c.expressions[1].this for c in calls})
    path_list = ", ".join(exp.Literal.string(p).sql(dialect="duckdb") for p in paths)
    document = f"CAST({documents.pop()} AS VARCHAR)"
    # Same 64 KB limit as redshift_json_text (functions.py): the record fails and is skipped, not parsed.
    fields = (
        f"CASE WHEN strlen({document}) > {JSON_TEXT_LIMIT} THEN error('{JSON_TEXT_LIMIT_ERROR}') "
        f"ELSE json_extract_string({document}, [{path_list}]) END"
    )
    inner = sqlglot.parse_one(
        f"SELECT *, {fields} AS __json_fields "
        f"FROM {BATCH_TABLE}" + (f" WHERE {where.this.sql(dialect='duckdb')}" if where else ""),
        read="duckdb",
    )
    outer = query.copy()
    for call in outer.find_all(exp.Anonymous):
        if call.name.lower() == "redshift_json_text" and call.expressions[1].is_string:
            field = paths.index(call.expressions[1].this) + 1
            call.replace(sqlglot.parse_one(f"coalesce(__json_fields[{field}], '')", read="duckdb"))
    outer.set("where", None)
    outer.set(
        "from_", exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))
    )
    return outer


def _arrow_batch(batch: dict[str, list], refresh_time: datetime) -> pa.Table:
    records = [r for rs in batch.values() for r in rs]
    shards = [shard_id for shard_id, rs in batch.items() for _ in rs]
    # boto3 gives aware datetimes; Arrow converts them to UTC instants, then drops the zone.
    arrival = pa.array([r["ApproximateArrivalTimestamp"] for r in records], pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays(
        [
            arrival.cast(pa.timestamp("us")),
            pa.array([r["PartitionKey"] for r in records], pa.string()),
            pa.array(shards, pa.string()),
            pa.array([r["SequenceNumber"] for r in records], pa.string()),
            pa.repeat(pa.scalar(refresh_time, pa.timestamp("us")), len(records)),
            pa.array([r["Data"] for r in records], pa.binary()),
        ],
        schema=STREAM_SCHEMA,
    )


def _shard_stats(table: pa.Table) -> dict[str, tuple[int, datetime, datetime]]:
    """Per shard of a batch: bytes of its records' data, first and last arrival."""
    sizes = table.select(["shard_id", "approximate_arrival_timestamp"]).append_column(
        "size", pc.binary_length(table["kinesis_data"])
    )
    grouped = sizes.group_by("shard_id").aggregate(
        [("size", "sum"), ("approximate_arrival_timestamp", "min"), ("approximate_arrival_timestamp", "max")]
    )
    return {
        row["shard_id"]: (
            row["size_sum"],
            row["approximate_arrival_timestamp_min"],
            row["approximate_arrival_timestamp_max"],
        )
        for row in grouped.to_pylist()
    }


def _utc_timestamp(value: Any) -> datetime:
    """A response timestamp as an aware UTC datetime (the same instant botocore's parser gives)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return botocore.utils.parse_timestamp(value)


def _mask(length: int, failures: list[tuple[int, str]]) -> list[bool]:
    mask = [True] * length
    for index, _ in failures:
        mask[index] = False
    return mask


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass
