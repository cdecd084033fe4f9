"""History export: transactions with labels and customer_info as CSV, optionally uploaded to S3.

    paths = export_history(history, info, out_dir, gzip=True)   # {"transactions": Path, "customer_info": Path}
    uris = upload_to_s3(paths.values(), "s3://bucket/prefix")    # ["s3://bucket/prefix/transactions.csv.gz", ...]

CSV: a header with the article's column names, comma-separated, TX_DATETIME "YYYY-MM-DD HH:MM:SS",
TX_AMOUNT with 2 decimals. Files are written to a temporary name and renamed, so a crash never
leaves a half-written file under the final name. S3 uses boto3's standard configuration
(`AWS_ENDPOINT_URL_S3` for a local endpoint).
"""

from __future__ import annotations

import csv
import gzip as gzip_module
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from producer.kinesis import ProducerError
from producer.simulator import (
    COLUMNS,
    CUSTOMER_INFO_COLUMNS,
    Transactions,
    WorldConfig,
    customer_info,
    simulate_history,
)

TRANSACTIONS_FILE = "transactions.csv"
CUSTOMER_INFO_FILE = "customer_info.csv"
_CHUNK_ROWS = 100_000


def _open_text(path: Path, gzip: bool) -> io.TextIOBase:
    if gzip:
        # compresslevel 3: about a third of the default's time, files ~15% larger.
        return gzip_module.open(path, "wt", encoding="utf-8", newline="", compresslevel=3)
    return open(path, "w", encoding="utf-8", newline="")


def _atomic_write(path: Path, gzip: bool, write: Callable[[Any], None]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _open_text(tmp, gzip) as handle:
            write(handle)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_transactions_csv(
    transactions: Transactions,
    path: str | Path,
    gzip: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Write transactions with labels; `on_progress(rows_written)` after each chunk."""
    path = Path(path)

    # One str.format per row: about 3x faster than csv.writer, and no field here needs quoting.
    row = "{},{},{},{},{:.2f},{},{},{},{}\n".format

    def write(handle: Any) -> None:
        handle.write(",".join(COLUMNS) + "\n")
        for start in range(0, len(transactions), _CHUNK_ROWS):
            part = transactions.take(slice(start, start + _CHUNK_ROWS))
            handle.write(
                "".join(
                    map(
                        row,
                        part.TRANSACTION_ID.tolist(),
                        part.datetime_strings().tolist(),
                        part.CUSTOMER_ID.tolist(),
                        part.TERMINAL_ID.tolist(),
                        part.TX_AMOUNT.tolist(),
                        part.TX_TIME_SECONDS.tolist(),
                        part.TX_TIME_DAYS.tolist(),
                        part.TX_FRAUD.tolist(),
                        part.TX_FRAUD_SCENARIO.tolist(),
                    )
                )
            )
            if on_progress is not None:
                on_progress(min(start + _CHUNK_ROWS, len(transactions)))

    return _atomic_write(path, gzip, write)


def write_customer_info_csv(rows: Sequence[dict[str, Any]], path: str | Path, gzip: bool = False) -> Path:
    """Write customer_info rows (the article's DDL column names as the header)."""

    def write(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=CUSTOMER_INFO_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    return _atomic_write(Path(path), gzip, write)


def export_history(
    transactions: Transactions,
    info: Sequence[dict[str, Any]],
    out_dir: str | Path,
    gzip: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Write transactions.csv[.gz] and customer_info.csv[.gz] into out_dir (created if missing)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzip else ""
    return {
        "transactions": write_transactions_csv(
            transactions, out_dir / (TRANSACTIONS_FILE + suffix), gzip, on_progress
        ),
        "customer_info": write_customer_info_csv(info, out_dir / (CUSTOMER_INFO_FILE + suffix), gzip),
    }


def export_simulated_history(out_dir: str | Path, config: WorldConfig | None = None) -> Path:
    """Simulate a world's history (default: the default world) and write it into out_dir; the transactions CSV."""
    world, history = simulate_history(config or WorldConfig())
    return export_history(history, customer_info(world), out_dir)["transactions"]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "prefix") of "s3://bucket/prefix" (prefix without trailing slash, may be empty)."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ProducerError(f"not an S3 URI (s3://bucket/prefix): {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def upload_to_s3(paths: Iterable[str | Path], s3_uri: str, client: Any | None = None) -> list[str]:
    """Upload files under s3://bucket/prefix/<file name>; returns their URIs.

    A missing bucket raises ProducerError naming it; other AWS errors propagate.
    """
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    bucket, prefix = parse_s3_uri(s3_uri)
    client = client if client is not None else boto3.client("s3")
    uris = []
    for path in map(Path, paths):
        key = f"{prefix}/{path.name}" if prefix else path.name
        try:
            client.upload_file(str(path), bucket, key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404"):
                raise ProducerError(f"S3 bucket '{bucket}' not found") from exc
            raise
        except S3UploadFailedError as exc:  # the transfer manager wraps the ClientError
            if "NoSuchBucket" in str(exc):
                raise ProducerError(f"S3 bucket '{bucket}' not found") from exc
            raise
        uris.append(f"s3://{bucket}/{key}")
    return uris
