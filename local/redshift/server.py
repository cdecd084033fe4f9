"""The Redshift Data API endpoint: the redshift-data JSON 1.1 protocol over HTTP on loopback.

botocore's service model is the specification: requests are validated against its shapes, answers
use its member names and its exception shapes (`__type`), so unchanged boto3 code and the AWS CLI
behave as against AWS once `AWS_ENDPOINT_URL_REDSHIFT_DATA` points here.

    handle = start_server(Engine("warehouse.duckdb"))   # 127.0.0.1, a free port
    os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"] = handle.url
    ...
    handle.shutdown()

`python -m local redshift [--port N] [--db FILE]` runs it alone.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import functools
import json
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.model
import botocore.session

from local.redshift.dataapi_statements import (
    ActiveStatementsExceeded,
    NotCancellable,
    Statement,
    StatementStore,
    SubStatement,
)
from local.redshift.engine import Engine

SERVICE = "redshift-data"
TARGET_PREFIX = "RedshiftData."
CONTENT_TYPE = "application/x-amz-json-1.1"
DEFAULT_PORT = 7433
DEFAULT_DATABASE = "dev"
DEFAULT_PAGE_BYTES = 1 << 20  # AWS pages by size too (its exact page size is not documented)
NO_RESULT = "Query does not have result. Please check query status with DescribeStatement."


class ApiError(Exception):
    """An error answered with one of the service's exception shapes."""

    def __init__(self, type_name: str, message: str, status: int = 400, **members: str) -> None:
        super().__init__(message)
        self.type_name, self.message, self.status, self.members = type_name, message, status, members


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def not_found(statement_id: str, message: str = "Query does not exist.") -> ApiError:
    return ApiError("ResourceNotFoundException", message, ResourceId=statement_id)


# -- request validation against the service model -------------------------------------------------


class RequestValidator:
    """Checks a request body against botocore's input shape the way the service does (types, required
    members, lengths, ranges, patterns, enums), answering SerializationException / ValidationException."""

    def __init__(self) -> None:
        self.model = _service_model()

    def check(self, operation: str, body: dict[str, Any]) -> None:
        shape = self.model.operation_model(operation).input_shape
        problems: list[str] = []
        self._check(shape, body, "", problems)
        if problems:
            count = len(problems)
            raise validation(
                f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems)
            )

    def _check(self, shape: Any, value: Any, path: str, problems: list[str]) -> None:
        kind = shape.type_name
        expected = {
            "structure": dict,
            "list": list,
            "string": str,
            "integer": int,
            "long": int,
            "boolean": bool,
            "double": (int, float),
        }.get(kind)
        wrong_type = expected is not None and (
            not isinstance(value, expected) or (kind in ("integer", "long") and isinstance(value, bool))
        )
        if wrong_type:
            raise ApiError(
                "SerializationException", f"Unexpected value type for '{path or 'body'}': {kind} expected"
            )
        meta = shape.metadata
        if kind == "structure":
            for name in shape.required_members:
                if value.get(name) is None:
                    problems.append(
                        f"Value null at '{_member(path, name)}' failed to satisfy constraint: Member must not be null"
                    )
            for name, member_value in value.items():
                if name in shape.members and member_value is not None:
                    self._check(shape.members[name], member_value, _member(path, name), problems)
        elif kind == "list":
            self._length(value, len(value), meta, path, problems)
            for i, item in enumerate(value):
                self._check(shape.member, item, f"{path}.{i + 1}.member", problems)
        elif kind == "string":
            self._length(value, len(value), meta, path, problems)
            if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
                problems.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must satisfy regular expression pattern: {meta['pattern']}"
                )
            if shape.enum and value not in shape.enum:
                problems.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
                )
        elif kind in ("integer", "long"):
            if "min" in meta and value < meta["min"]:
                problems.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {meta['min']}"
                )
            if "max" in meta and value > meta["max"]:
                problems.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: "
                    f"Member must have value less than or equal to {meta['max']}"
                )

    @staticmethod
    def _length(value: Any, length: int, meta: dict, path: str, problems: list[str]) -> None:
        if "min" in meta and length < meta["min"]:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must have length greater than or equal to {meta['min']}"
            )
        if "max" in meta and length > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {meta['max']}"
            )


@functools.cache
def _service_model() -> botocore.model.ServiceModel:
    return botocore.session.get_session().get_service_model(SERVICE)


def _member(path: str, name: str) -> str:
    name = name[0].lower() + name[1:]
    return f"{path}.{name}" if path else name


# -- the operations -------------------------------------------------------------------------------


class DataApi:
    """The redshift-data operations over a StatementStore; each takes and returns a JSON body."""

    def __init__(self, store: StatementStore, *, page_bytes: int = DEFAULT_PAGE_BYTES) -> None:
        self.store = store
        self.page_bytes = page_bytes
        self.validator = RequestValidator()
        self.operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ExecuteStatement": self.execute_statement,
            "BatchExecuteStatement": self.batch_execute_statement,
            "DescribeStatement": self.describe_statement,
            "GetStatementResult": self.get_statement_result,
            "GetStatementResultV2": self.get_statement_result_v2,
            "ListStatements": self.list_statements,
            "CancelStatement": self.cancel_statement,
        }

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise ApiError(
                "UnknownOperationException", f"Operation {operation} is not supported by this endpoint"
            )
        self.validator.check(operation, body)
        return handler(body)

    # ExecuteStatement / BatchExecuteStatement

    def execute_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._submit(body, [body["Sql"]], is_batch=False)

    def batch_execute_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("ExecutionMode", "TRANSACTION") != "TRANSACTION":
            raise validation(
                "ExecutionMode AUTO_COMMIT is not supported by the local emulator; use TRANSACTION."
            )
        return self._submit(body, list(body["Sqls"]), is_batch=True)

    def _submit(self, body: dict[str, Any], sqls: list[str], *, is_batch: bool) -> dict[str, Any]:
        connection = _connection(body)
        if any(not sql.strip() for sql in sqls):
            raise validation("SQL statement cannot be empty.")
        if body.get("SessionId") or body.get("SessionKeepAliveSeconds"):
            raise validation(
                "Sessions (SessionId, SessionKeepAliveSeconds) are not supported by the local emulator."
            )
        parameters = body.get("Parameters")
        if parameters:
            names = [p["name"] for p in parameters]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise validation(f"Duplicate parameter names: {', '.join(duplicates)}")
        try:
            statement = self.store.submit(
                sqls,
                is_batch=is_batch,
                parameters=parameters,
                connection=connection,
                statement_name=body.get("StatementName"),
                result_format=body.get("ResultFormat", "JSON"),
                client_token=body.get("ClientToken"),
            )
        except ActiveStatementsExceeded as exc:
            raise ApiError("ActiveStatementsExceededException", str(exc)) from exc
        out: dict[str, Any] = {"Id": statement.id, "CreatedAt": statement.created_at, **connection}
        if body.get("WaitTimeSeconds"):
            statement.done.wait(body["WaitTimeSeconds"])
            out["Status"], out["HasResultSet"] = statement.status, statement.has_result_set
        return out

    # DescribeStatement

    def describe_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        statement, sub = self._lookup(body["Id"])
        if body.get("WaitTimeSeconds"):
            statement.done.wait(body["WaitTimeSeconds"])
        if sub is not None:
            return {**_sub_description(sub), **statement.connection, "RedshiftPid": statement.redshift_pid}
        out: dict[str, Any] = {
            "Id": statement.id,
            "Status": statement.status,
            "CreatedAt": statement.created_at,
            "UpdatedAt": statement.updated_at,
            "Duration": statement.duration_ns,
            "HasResultSet": statement.has_result_set,
            "QueryString": statement.query_string,
            "ResultRows": statement.result_rows,
            "ResultSize": statement.result_size,
            "RedshiftPid": statement.redshift_pid,
            "RedshiftQueryId": 0 if statement.is_batch else statement.subs[0].query_id,
            "ResultFormat": statement.result_format,
            **statement.connection,
        }
        if statement.error:
            out["Error"] = statement.error
        if statement.parameters:
            out["QueryParameters"] = statement.parameters
        if statement.is_batch:
            out["SubStatements"] = [_sub_description(s) for s in statement.subs]
        return out

    # GetStatementResult / GetStatementResultV2

    def get_statement_result(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._result_page(body, "JSON")

    def get_statement_result_v2(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._result_page(body, "CSV")

    def _result_page(self, body: dict[str, Any], result_format: str) -> dict[str, Any]:
        statement_id = body["Id"]
        statement, sub = self._lookup(statement_id)
        if body.get("WaitTimeSeconds"):
            statement.done.wait(body["WaitTimeSeconds"])
        if sub is None:
            if statement.is_batch:
                raise validation("BatchExecuteStatement result can only be retrieved with sub-statement id.")
            sub = statement.subs[0]
        if statement.result_format != result_format:
            operation = "GetStatementResultV2" if statement.result_format == "CSV" else "GetStatementResult"
            raise validation(
                f"The statement ran with ResultFormat {statement.result_format}: use {operation}."
            )
        if sub.status != "FINISHED" or sub.result is None:
            raise not_found(statement_id, NO_RESULT)
        start = _decode_token(body.get("NextToken"), statement_id)
        result = sub.result
        records, next_start = result.page(start, self.page_bytes)
        out: dict[str, Any] = {"ColumnMetadata": result.column_metadata, "TotalNumRows": len(result.records)}
        if result_format == "CSV":
            text = (result.csv_header if start == 0 else "") + "".join(records)
            out["Records"], out["ResultFormat"] = [{"CSVRecords": text}], "CSV"
        else:
            out["Records"] = records
        if next_start is not None:
            out["NextToken"] = _encode_token(statement_id, next_start)
        return out

    # ListStatements

    def list_statements(self, body: dict[str, Any]) -> dict[str, Any]:
        status = body.get("Status", "ALL")
        name = body.get("StatementName")
        wanted = {k: body[k] for k in ("Database", "ClusterIdentifier", "WorkgroupName") if body.get(k)}
        statements = [
            s
            for s in self.store.all()
            if (status == "ALL" or s.status == status)
            and (not name or (s.statement_name or "").startswith(name))
            and all(s.connection.get(k) == v for k, v in wanted.items())
        ]
        statements.sort(key=lambda s: s.created_at, reverse=True)
        limit = body.get("MaxResults") or 100
        start = _decode_token(body.get("NextToken"), "ListStatements")
        page = statements[start : start + limit]
        out: dict[str, Any] = {"Statements": [_statement_data(s) for s in page]}
        if start + limit < len(statements):
            out["NextToken"] = _encode_token("ListStatements", start + limit)
        return out

    # CancelStatement

    def cancel_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        statement, _ = self._lookup(body["Id"])
        try:
            self.store.cancel(statement)
        except NotCancellable as exc:
            raise validation(str(exc)) from exc
        return {"Status": True}

    def _lookup(self, statement_id: str) -> tuple[Statement, SubStatement | None]:
        found = self.store.get(statement_id)
        if found is None:
            raise not_found(statement_id)
        return found


def _connection(body: dict[str, Any]) -> dict[str, str]:
    """The connection members as given, checked the way the service checks them."""
    cluster, workgroup, secret = (
        body.get("ClusterIdentifier"),
        body.get("WorkgroupName"),
        body.get("SecretArn"),
    )
    if cluster and workgroup:
        raise validation("ClusterIdentifier and WorkgroupName cannot both be specified.")
    if not (cluster or workgroup or secret):
        raise validation("Either ClusterIdentifier or WorkgroupName needs to be specified.")
    connection = {"Database": body.get("Database") or DEFAULT_DATABASE}
    for key in ("ClusterIdentifier", "WorkgroupName", "SecretArn", "DbUser"):
        if body.get(key):
            connection[key] = body[key]
    return connection


def _sub_description(sub: SubStatement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": sub.id,
        "Status": sub.status,
        "CreatedAt": sub.created_at,
        "UpdatedAt": sub.updated_at,
        "Duration": sub.duration_ns,
        "HasResultSet": sub.has_result_set,
        "QueryString": sub.sql,
        "ResultRows": sub.result_rows,
        "ResultSize": sub.result.total_bytes if sub.result else (0 if sub.status == "FINISHED" else -1),
        "RedshiftQueryId": sub.query_id,
    }
    if sub.error:
        out["Error"] = sub.error
    return out


def _statement_data(s: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": s.id,
        "Status": s.status,
        "CreatedAt": s.created_at,
        "UpdatedAt": s.updated_at,
        "IsBatchStatement": s.is_batch,
        "ResultFormat": s.result_format,
    }
    if s.is_batch:
        out["QueryStrings"] = [sub.sql for sub in s.subs]
    else:
        out["QueryString"] = s.subs[0].sql
    if s.statement_name:
        out["StatementName"] = s.statement_name
    if s.parameters:
        out["QueryParameters"] = s.parameters
    if s.connection.get("SecretArn"):
        out["SecretArn"] = s.connection["SecretArn"]
    return out


def _encode_token(scope: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{scope}|{position}".encode()).decode()


def _decode_token(token: str | None, scope: str) -> int:
    if not token:
        return 0
    try:
        token_scope, _, position = base64.urlsafe_b64decode(token.encode()).decode().rpartition("|")
        if token_scope == scope and position.isdigit():
            return int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise validation("Invalid NextToken.")


# -- HTTP ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: botocore reuses its connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _HttpServer

    def do_POST(self) -> None:
        try:
            body = self._request_body()
            target = self.headers.get("X-Amz-Target", "")
            if not target.startswith(TARGET_PREFIX):
                raise ApiError("UnknownOperationException", f"Missing or unknown X-Amz-Target: {target!r}")
            response = self.server.api.call(target[len(TARGET_PREFIX) :], body)
            self._send(200, response)
        except ApiError as exc:
            self._send(exc.status, {"__type": exc.type_name, "Message": exc.message, **exc.members})
        except Exception as exc:  # the service answers every request; a bug must not drop the connection
            self._send(500, {"__type": "InternalServerException", "Message": f"{type(exc).__name__}: {exc}"})

    def do_GET(self) -> None:
        self._send(404, {"__type": "UnknownOperationException", "Message": "POST JSON 1.1 requests to /"})

    def _request_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError("SerializationException", f"Request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError("SerializationException", "Request body must be a JSON object")
        return body

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the stack's output


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: DataApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class ServerHandle:
    """A running endpoint: `.url` for AWS_ENDPOINT_URL_REDSHIFT_DATA, `.shutdown()` to stop it."""

    def __init__(self, http: _HttpServer, store: StatementStore, thread: threading.Thread) -> None:
        self._http, self.store, self._thread = http, store, thread
        self.host, self.port = http.server_address[0], http.server_address[1]
        self.url = f"http://{self.host}:{self.port}"

    def shutdown(self) -> None:
        """Stop accepting requests, cancel running statements, wait for the workers. Idempotent."""
        if self._thread.is_alive():
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()
        self.store.shutdown()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def start_server(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    workers: int = 4,
    max_active_statements: int = 500,
    page_bytes: int = DEFAULT_PAGE_BYTES,
    retention_seconds: float = 24 * 3600,
) -> ServerHandle:
    """Serve the Data API for `engine` on host:port (port 0: a free one) from a background thread.

    Raises OSError when the port is taken. Only loopback addresses are accepted: the endpoint has no
    authentication, like the rest of the local stack.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the Data API emulator binds loopback only, not {host!r}")
    store = StatementStore(
        engine, workers=workers, max_active=max_active_statements, retention_seconds=retention_seconds
    )
    try:
        http = _HttpServer((host, port), DataApi(store, page_bytes=page_bytes))
    except OSError:
        store.shutdown()
        raise
    # A short poll interval: shutdown() waits for serve_forever to notice, up to one interval.
    thread = threading.Thread(
        target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="redshift-data-http", daemon=True
    )
    thread.start()
    return ServerHandle(http, store, thread)


# -- CLI: python -m local redshift ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--db",
        default="local-redshift.duckdb",
        help="DuckDB database file (created if missing; kept across runs)",
    )
    parser.add_argument("--workers", type=int, default=4, help="statements run in parallel (default 4)")
    parser.add_argument(
        "--page-bytes", type=int, default=DEFAULT_PAGE_BYTES, help="GetStatementResult page size in bytes"
    )


def run(args: argparse.Namespace) -> int:
    db = Path(args.db)
    if db.parent and not db.parent.exists():
        print(f"error: directory {db.parent} does not exist", file=sys.stderr)
        return 2
    if not _port_free(args.port):  # checked first: opening the database takes a few seconds
        print(f"error: cannot listen on 127.0.0.1:{args.port}: port already in use", file=sys.stderr)
        return 1
    try:
        engine = Engine(db)
    except Exception as exc:  # e.g. the file is locked by another running emulator
        print(f"error: cannot open database {db}: {exc}", file=sys.stderr)
        return 1
    try:
        try:
            handle = start_server(engine, port=args.port, workers=args.workers, page_bytes=args.page_bytes)
        except OSError as exc:
            reason = "port already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            print(f"error: cannot listen on 127.0.0.1:{args.port}: {reason}", file=sys.stderr)
            return 1
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"Redshift Data API emulator on {handle.url} (database {db})", flush=True)
        print(f"export AWS_ENDPOINT_URL_REDSHIFT_DATA={handle.url}", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping...", file=sys.stderr, flush=True)
        handle.shutdown()
        return 0
    finally:
        engine.close()


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
