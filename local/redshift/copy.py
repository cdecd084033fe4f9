"""COPY table FROM 's3://bucket/prefix' ...: download the objects with boto3 (moto locally) and load them
with DuckDB's CSV reader into the caller's transaction, so a bad row fails the whole COPY and nothing
of it is kept. Supported options: CSV / FORMAT AS CSV, DELIMITER, IGNOREHEADER, GZIP, BZIP2 (no),
DATEFORMAT / TIMEFORMAT ('auto' or a Redshift format string), NULL AS, EMPTYASNULL, BLANKSASNULL
(accepted), QUOTE, IAM_ROLE / CREDENTIALS / REGION (accepted, credentials come from boto3's chain).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import duckdb
from sqlglot.dialects.redshift import Redshift

from local.redshift import translate as tr
from local.redshift.errors import RedshiftError

if TYPE_CHECKING:
    from local.redshift.engine import Engine

_HEAD = re.compile(
    r"^\s*COPY\s+(?P<table>(?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)\s*(?:\((?P<cols>[^)]*)\))?\s*"
    r"FROM\s+'(?P<source>[^']*)'(?P<options>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_VALUE_OPTIONS = {
    "IAM_ROLE", "CREDENTIALS", "DELIMITER", "IGNOREHEADER", "DATEFORMAT", "TIMEFORMAT", "REGION",
    "QUOTE", "NULL", "MAXERROR", "ENCODING", "FORMAT", "COMPUPDATE", "STATUPDATE", "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY", "SESSION_TOKEN",
}  # fmt: skip
_FLAG_OPTIONS = {
    "CSV", "GZIP", "EMPTYASNULL", "BLANKSASNULL", "TRUNCATECOLUMNS", "ACCEPTANYDATE", "IGNOREBLANKLINES",
    "TRIMBLANKS", "FILLRECORD", "ROUNDEC", "REMOVEQUOTES", "EXPLICIT_IDS", "ACCEPTINVCHARS", "ESCAPE",
}  # fmt: skip
_UNSUPPORTED = {
    "BZIP2",
    "ZSTD",
    "LZOP",
    "MANIFEST",
    "JSON",
    "PARQUET",
    "ORC",
    "AVRO",
    "FIXEDWIDTH",
    "SHAPEFILE",
}
# Redshift datetime format parts -> strptime (longest first).
_FORMAT_PARTS = [("YYYY", "%Y"), ("MM", "%m"), ("DD", "%d"), ("HH24", "%H"), ("HH", "%H"), ("MI", "%M"),
                 ("SS", "%S"), ("YY", "%y"), ("MON", "%b")]  # fmt: skip


def parse_options(text: str) -> dict[str, Any]:
    """COPY options -> {NAME: value or True}. Unknown or unsupported options are errors, not ignored."""
    tokens = [t for t in Redshift().tokenize(text) if t.text != ";"]
    options: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        word = tokens[i].text.upper()
        i += 1
        if word in _UNSUPPORTED:
            raise RedshiftError(f"COPY option {word} is not supported by the local emulator", "0A000")
        if word in _FLAG_OPTIONS:
            if word == "ACCEPTINVCHARS" and i < len(tokens) and tokens[i].token_type.name == "STRING":
                i += 1
            options[word] = True
            continue
        if word not in _VALUE_OPTIONS:
            raise RedshiftError(f'syntax error at or near "{tokens[i - 1].text}" in COPY options', "42601")
        if i < len(tokens) and tokens[i].text.upper() == "AS":
            i += 1
        if i >= len(tokens):
            raise RedshiftError(f"COPY option {word} needs a value", "42601")
        token = tokens[i]
        # String values as written (the tokenizer would unescape '\N' to 'N').
        value = (
            text[token.start + 1 : token.end].replace("''", "'")
            if token.token_type.name == "STRING"
            else token.text
        )
        i += 1
        if word == "FORMAT":
            value = value.upper()
            if value in _UNSUPPORTED:
                raise RedshiftError(f"COPY FORMAT {value} is not supported by the local emulator", "0A000")
            if value == "CSV":
                options["CSV"] = True
            continue
        options[word] = value
    return options


def _strptime(fmt: str) -> str:
    out = fmt
    for redshift, python in _FORMAT_PARTS:
        out = out.replace(redshift, python)
    return out


def run_copy(engine: Engine, con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """Run one COPY statement on `con` (inside the caller's transaction); returns rows loaded."""
    match = _HEAD.match(sql)
    if not match:
        raise RedshiftError(
            "syntax error in COPY: expected COPY table [(columns)] FROM 's3://bucket/key' ...", "42601"
        )
    table = tr.parse_table_name(match["table"])
    options = parse_options(match["options"])
    source = match["source"]
    if not source.startswith("s3://"):
        raise RedshiftError(f"COPY FROM '{source}': only s3:// sources are supported", "0A000")
    bucket, _, prefix = source[5:].partition("/")
    table_columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table.split(".")[-1]],
    ).fetchall()
    if not table_columns:
        raise RedshiftError(f'relation "{table}" does not exist', "42P01")
    types = dict(table_columns)
    names = [c.strip().strip('"').lower() for c in match["cols"].split(",")] if match["cols"] else list(types)
    unknown = [n for n in names if n not in types]
    if unknown:
        raise RedshiftError(f'column "{unknown[0]}" of relation "{table}" does not exist', "42703")

    with tempfile.TemporaryDirectory(prefix="redshift-copy-") as tmp:
        files = _download(bucket, prefix, Path(tmp))
        reader = _reader_sql(files, names, types, options)
        column_list = ", ".join(f'"{n}"' for n in names)
        try:
            row = con.execute(f'INSERT INTO "{table}" ({column_list}) SELECT * FROM {reader}').fetchone()
        except duckdb.Error as exc:
            raise _load_error(table, exc, files) from exc
    return int(row[0]) if row else 0


def _download(bucket: str, prefix: str, target: Path) -> list[str]:
    s3 = boto3.session.Session().client("s3")
    try:
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    except s3.exceptions.NoSuchBucket as exc:
        raise RedshiftError(
            f"S3ServiceException:The specified bucket does not exist ({bucket})", "XX000"
        ) from exc
    except Exception as exc:
        raise RedshiftError(
            f"S3ServiceException: cannot list s3://{bucket}/{prefix}: {exc}", "XX000"
        ) from exc
    if not keys:
        raise RedshiftError(f"The specified S3 prefix '{prefix}' does not exist", "XX000")
    files = []
    for index, key in enumerate(sorted(keys)):
        path = target / f"{index:05d}-{Path(key).name}"
        s3.download_file(bucket, key, str(path))
        files.append(str(path))
    return files


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reader_sql(files: list[str], names: list[str], types: dict[str, str], options: dict[str, Any]) -> str:
    csv = bool(options.get("CSV"))
    delimiter = options.get("DELIMITER", "," if csv else "|")
    args = [
        f"[{', '.join(_literal(f) for f in files)}]",
        "header = false",
        "auto_detect = false",
        f"delim = {_literal(delimiter)}",
        f"skip = {int(options.get('IGNOREHEADER', 0))}",
        f"columns = {{{', '.join(f'{_literal(n)}: {_literal(types[n])}' for n in names)}}}",
        "compression = " + ("'gzip'" if options.get("GZIP") else "'none'"),
        "strict_mode = true",
        "ignore_errors = false",
    ]
    if csv:
        args += [
            f"quote = {_literal(options.get('QUOTE', chr(34)))}",
            f"escape = {_literal(options.get('QUOTE', chr(34)))}",
        ]
    else:
        args += ["quote = ''", "escape = '\\'"]
    null = options.get("NULL", "" if csv else "\\N")
    args.append(f"nullstr = {_literal(null)}")
    text_columns = [n for n in names if types[n].upper().startswith("VARCHAR")]
    if null == "" and text_columns and not options.get("EMPTYASNULL"):
        # Redshift loads an empty CHAR/VARCHAR field as '' unless EMPTYASNULL; other types as NULL.
        args.append(f"force_not_null = [{', '.join(_literal(n) for n in text_columns)}]")
    for option, key in (("DATEFORMAT", "dateformat"), ("TIMEFORMAT", "timestampformat")):
        value = options.get(option)
        if value and value.strip("'").lower() != "auto":
            args.append(f"{key} = {_literal(_strptime(value.strip(chr(39))))}")
    return f"read_csv({', '.join(args)})"


def _load_error(table: str, exc: duckdb.Error, files: list[str]) -> RedshiftError:
    text = str(exc)
    line = re.search(r"Line: (\d+)", text)
    reason = text.split("\n", 1)[0]
    reason = re.sub(r"^[A-Za-z ]*Error: ", "", reason)
    detail = re.search(r"(Could not convert string .*?)(?:\n|$)", text)
    if detail:
        reason = detail.group(1).strip()
    elif "Expected Number of Columns" in text:
        found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
        reason = (
            f"column count mismatch: expected {found.group(1)}, found {found.group(2)}"
            if found
            else "column count mismatch"
        )
    where = f" line {line.group(1)}" if line else ""
    return RedshiftError(
        f"Load into table '{table}' failed.{where}: {reason}. Nothing of this COPY was loaded.", "XX000"
    )
