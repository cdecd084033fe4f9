"""Engine results in the Data API's wire shapes: ColumnMetadata, typed Field records, CSV, size-based pages.

Kept apart from the HTTP server so that the encoding rules (which Python value becomes which `Field`
member, how a timestamp is printed) have one definition and can be tested without a socket.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from local.redshift.engine import Column, Result

# DuckDB type names (what a bare DuckDB cursor reports) -> Redshift names the Data API reports.
# Redshift names map to themselves, so the engine may report either.
_REDSHIFT_TYPE = {
    "tinyint": "int2",
    "smallint": "int2",
    "int2": "int2",
    "integer": "int4",
    "int": "int4",
    "int4": "int4",
    "bigint": "int8",
    "int8": "int8",
    "hugeint": "numeric",
    "ubigint": "numeric",
    "uinteger": "int8",
    "usmallint": "int4",
    "utinyint": "int2",
    "double": "float8",
    "float8": "float8",
    "float": "float4",
    "real": "float4",
    "float4": "float4",
    "decimal": "numeric",
    "numeric": "numeric",
    "boolean": "bool",
    "bool": "bool",
    "varchar": "varchar",
    "char": "bpchar",
    "bpchar": "bpchar",
    "text": "varchar",
    "uuid": "varchar",
    "date": "date",
    "time": "time",
    "timetz": "timetz",
    "timestamp": "timestamp",
    "timestamp with time zone": "timestamptz",
    "timestamptz": "timestamptz",
    "interval": "interval",
    "blob": "varbyte",
    "varbyte": "varbyte",
    "json": "super",
    "super": "super",
}
_DEFAULT_PRECISION = {
    "int2": 5,
    "int4": 10,
    "int8": 19,
    "float4": 8,
    "float8": 17,
    "bool": 1,
    "varchar": 65535,
}
_SIGNED = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_CASE_SENSITIVE = {"varchar", "bpchar", "super"}
_DECIMAL_TYPE = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def redshift_type(column: Column) -> tuple[str, int, int]:
    """(typeName, precision, scale) as the Data API reports them for an engine column."""
    name = column.type_name.strip().lower()
    precision, scale = column.precision, column.scale
    match = _DECIMAL_TYPE.match(name)
    if match:
        return "numeric", precision or int(match.group(1)), scale or int(match.group(2))
    if name.endswith("[]") or name.startswith(("struct", "map", "list")):
        return "super", precision, scale
    type_name = _REDSHIFT_TYPE.get(name, name)
    return type_name, precision or _DEFAULT_PRECISION.get(type_name, 0), scale


def column_metadata(columns: Sequence[Column]) -> list[dict[str, Any]]:
    metadata = []
    for column in columns:
        type_name, precision, scale = redshift_type(column)
        metadata.append(
            {
                "isCaseSensitive": type_name in _CASE_SENSITIVE,
                "isCurrency": False,
                "isSigned": type_name in _SIGNED,
                "label": column.name,
                "length": 0,
                "name": column.name,
                "nullable": 1 if column.nullable else 0,
                "precision": precision,
                "scale": scale,
                "schemaName": "",
                "tableName": "",
                "typeName": type_name,
            }
        )
    return metadata


def text_value(value: Any) -> str:
    """A non-null value as Redshift prints it (the Data API's stringValue and the CSV cells)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        text = value.replace(tzinfo=None).isoformat(sep=" ")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if value.tzinfo is not None:
            offset = value.utcoffset() or dt.timedelta(0)
            hours, rest = divmod(int(offset.total_seconds()), 3600)
            text += f"{hours:+03d}" + (f":{rest // 60:02d}" if rest else "")
        return text
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=text_value, separators=(",", ":"))
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)


def field(value: Any) -> dict[str, Any]:
    """One value as a Data API `Field`: the member is chosen the way the real service chooses it."""
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": text_value(value)}  # numeric, dates, varchar, super all arrive as text


@dataclass
class EncodedResult:
    """A finished statement's result, encoded once and then served page by page."""

    column_metadata: list[dict[str, Any]]
    records: list[Any]  # JSON: lists of Field dicts; CSV: one text line per row
    sizes: list[int]  # encoded bytes per record, for size-based paging
    result_format: str
    csv_header: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def page(self, start: int, page_bytes: int) -> tuple[list[Any], int | None]:
        """Records from `start` up to about `page_bytes` (at least one), and where the next page starts."""
        end, used = start, 0
        while end < len(self.records) and (end == start or used + self.sizes[end] <= page_bytes):
            used += self.sizes[end]
            end += 1
        return self.records[start:end], (end if end < len(self.records) else None)


def encode_result(result: Result, result_format: str) -> EncodedResult:
    metadata = column_metadata(result.columns)
    if result_format == "CSV":
        lines = [_csv_line(row) for row in result.rows]
        header = _csv_line([c.name for c in result.columns])
        return EncodedResult(metadata, lines, [len(line.encode()) for line in lines], "CSV", header)
    records = [[field(v) for v in row] for row in result.rows]
    sizes = [len(json.dumps(r, separators=(",", ":"))) for r in records]
    return EncodedResult(metadata, records, sizes, "JSON")


def _csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else text_value(v) for v in values])
    return buffer.getvalue()
