"""A small client for the Redshift Data API (boto3 "redshift-data").

The endpoint comes only from boto3's standard configuration (`AWS_ENDPOINT_URL_REDSHIFT_DATA` locally).
Statements are asynchronous on the service: `execute` submits, waits with exponential backoff until
FINISHED, and raises `StatementError` (Redshift's message + the SQL) on FAILED/ABORTED, or
`StatementTimeout` (after cancelling it) when the statement outlives the configured timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3

from fraud_common.settings import WarehouseSettings

FIRST_POLL_S = 0.05
MAX_POLL_S = 2.0
MAX_SERVER_WAIT_S = 10  # the service allows 1..30 s


class DataApiError(Exception):
    """Base class of this module's errors."""


class StatementError(DataApiError):
    """A statement ended FAILED or ABORTED. `message` is Redshift's error text."""

    def __init__(self, message: str, sql: str, statement_id: str = "", status: str = "FAILED") -> None:
        super().__init__(f"{status}: {message}\n  statement: {_shorten(sql)}")
        self.message = message
        self.sql = sql
        self.statement_id = statement_id
        self.status = status


class StatementTimeout(DataApiError):
    def __init__(self, sql: str, statement_id: str, timeout_s: float) -> None:
        super().__init__(
            f"statement {statement_id} still running after {timeout_s:g} s (cancelled): {_shorten(sql)}"
        )
        self.sql = sql
        self.statement_id = statement_id


@dataclass
class StatementResult:
    statement_id: str
    rows_affected: int = -1  # DML row count (the service's ResultRows), -1 when unknown
    rows: list[dict[str, Any]] = field(default_factory=list)


class DataApi:
    def __init__(
        self,
        settings: WarehouseSettings,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client or boto3.client("redshift-data")
        self._sleep = sleep
        self._clock = clock

    def target(self) -> dict[str, str]:
        """Where a statement runs: WorkgroupName or ClusterIdentifier, Database, optional credentials."""
        s = self.settings
        target = {"Database": s.database}
        if s.workgroup:
            target["WorkgroupName"] = s.workgroup
        else:
            target["ClusterIdentifier"] = s.cluster_id or ""
        if s.secret_arn:
            target["SecretArn"] = s.secret_arn
        elif s.db_user and s.cluster_id:
            target["DbUser"] = s.db_user
        return target

    def submit(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> str:
        """Start one statement and return its id without waiting (it runs on even if the caller exits)."""
        request: dict[str, Any] = {**self.target(), "Sql": sql}
        if parameters:
            request["Parameters"] = to_parameters(parameters)
        if name:
            request["StatementName"] = name[:500]
        return self.client.execute_statement(**request)["Id"]

    def execute(
        self, sql: str, parameters: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> StatementResult:
        """Run one statement with `:name` parameters; return its rows (if any) as dicts."""
        statement_id = self.submit(sql, parameters, name=name)
        described = self.wait(statement_id, sql)
        result = StatementResult(statement_id, rows_affected=described.get("ResultRows", -1))
        if described.get("HasResultSet"):
            result.rows = list(self.fetch(statement_id))
        return result

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.execute(sql, parameters).rows

    def batch(
        self, sqls: Sequence[str], parameters: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> StatementResult:
        """Run statements in one transaction (all or nothing); the failing one is named in the error.
        Parameters are shared by all statements."""
        request: dict[str, Any] = {**self.target(), "Sqls": list(sqls)}
        if parameters:
            request["Parameters"] = to_parameters(parameters)
        if name:
            request["StatementName"] = name[:500]
        statement_id = self.client.batch_execute_statement(**request)["Id"]
        described = self.wait(statement_id, "\n;\n".join(sqls))
        return StatementResult(statement_id, rows_affected=described.get("ResultRows", -1))

    def wait(self, statement_id: str, sql: str) -> dict[str, Any]:
        """Describe (server-side wait, then exponential backoff) until a final status."""
        deadline = self._clock() + self.settings.statement_timeout_s
        delay = FIRST_POLL_S
        while True:
            # The service holds the call until the statement ends or WaitTimeSeconds pass: a statement
            # is seen FINISHED as soon as it is, instead of at the next backoff step.
            wait_s = min(MAX_SERVER_WAIT_S, max(1, math.ceil(deadline - self._clock())))
            described = self.client.describe_statement(Id=statement_id, WaitTimeSeconds=wait_s)
            if _ended(described, statement_id, sql):
                return described
            if self._clock() >= deadline:
                self._cancel(statement_id)
                raise StatementTimeout(sql, statement_id, self.settings.statement_timeout_s)
            self._sleep(delay)
            delay = min(delay * 2, MAX_POLL_S)

    def ended(self, statement_id: str, sql: str) -> bool:
        """Whether the statement has finished, from one DescribeStatement without waiting; raises
        StatementError if it failed."""
        return _ended(self.client.describe_statement(Id=statement_id), statement_id, sql)

    def fetch(self, statement_id: str) -> Iterator[dict[str, Any]]:
        """All result rows, page by page, as plain dicts keyed by column name."""
        token: str | None = None
        while True:
            page = self.client.get_statement_result(
                Id=statement_id, **({"NextToken": token} if token else {})
            )
            names = [c.get("name") or c.get("label") for c in page.get("ColumnMetadata", [])]
            types = [c.get("typeName", "") for c in page.get("ColumnMetadata", [])]
            for record in page.get("Records", []):
                yield {n: _value(f, t) for n, f, t in zip(names, record, types, strict=True)}
            token = page.get("NextToken")
            if not token:
                return

    def _cancel(self, statement_id: str) -> None:
        try:
            self.client.cancel_statement(Id=statement_id)
        except Exception:  # it may have finished meanwhile; the timeout error still stands
            pass


def _ended(described: Mapping[str, Any], statement_id: str, sql: str) -> bool:
    """True when FINISHED, False while running; StatementError (naming a batch's failing statement)
    when FAILED or ABORTED."""
    status = described["Status"]
    if status == "FINISHED":
        return True
    if status in ("FAILED", "ABORTED"):
        failed_sql = sql
        for sub in described.get("SubStatements", []):  # batch: name the statement that failed
            if sub.get("Status") in ("FAILED", "ABORTED"):
                failed_sql = sub.get("QueryString", sql)
                break
        message = described.get("Error") or f"statement {status.lower()}"
        raise StatementError(message, failed_sql, statement_id, status)
    return False


def to_parameters(parameters: Mapping[str, Any]) -> list[dict[str, str]]:
    """Data API parameters are name/value strings; Redshift casts them. NULL cannot be passed."""
    converted = []
    for name, value in parameters.items():
        if value is None:
            raise ValueError(f"parameter :{name} is None; the Data API cannot bind NULL")
        if isinstance(value, bool):
            value = "true" if value else "false"
        converted.append({"name": name, "value": str(value)})
    return converted


def _value(field_: Mapping[str, Any], type_name: str) -> Any:
    if field_.get("isNull"):
        return None
    for key in ("longValue", "doubleValue", "booleanValue", "blobValue"):
        if key in field_:
            return field_[key]
    text = field_.get("stringValue")
    if text is not None and type_name in ("numeric", "decimal"):
        return Decimal(text)
    return text


def _shorten(sql: str, limit: int = 300) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
