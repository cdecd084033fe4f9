"""`python -m producer` / `fraud-producer`: export a simulated history, or stream a live one to Kinesis.

    python -m producer history --out-dir out/history --gzip --s3-uri s3://bucket/history
    python -m producer stream --stream cust-payment-txn-stream --label-stream cust-payment-label-stream \\
        --rate 1000 --duration 120

Exit codes: 0 success; 1 records were given up on (written to the dead-letter file) or AWS failed;
2 bad arguments or settings (stream/bucket not found, no credentials, no region).
AWS settings (region, credentials, endpoints such as AWS_ENDPOINT_URL_KINESIS) come from boto3's
standard configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from producer.kinesis import KinesisWriter, ProducerError
from producer.simulator import LiveSimulator, WorldConfig, customer_info, simulate_history
from producer.stream import StreamStats, run_stream

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

err = Console(stderr=True)
out = Console()


class UsageError(Exception):
    """A user error: reported in one line, exit code 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _add_world_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WorldConfig()
    group = parser.add_argument_group("simulated world")
    group.add_argument("--customers", type=_positive_int, default=defaults.n_customers, help="%(default)s")
    group.add_argument("--terminals", type=_positive_int, default=defaults.n_terminals, help="%(default)s")
    group.add_argument(
        "--days", type=_non_negative_int, default=defaults.n_days, help="days of history (%(default)s)"
    )
    group.add_argument("--start-date", type=_date, default=defaults.start_date, help="%(default)s")
    group.add_argument(
        "--radius", type=_positive_float, default=defaults.radius, help="terminal radius (%(default)s)"
    )
    group.add_argument("--seed", type=_non_negative_int, default=defaults.seed, help="%(default)s")


def _world_config(args: argparse.Namespace) -> WorldConfig:
    try:
        return WorldConfig(
            n_customers=args.customers,
            n_terminals=args.terminals,
            n_days=args.days,
            start_date=args.start_date,
            radius=args.radius,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    invoked_as_script = Path(sys.argv[0]).name == "fraud-producer"
    parser = argparse.ArgumentParser(
        prog="fraud-producer" if invoked_as_script else "python -m producer",
        description="Card-transaction simulator and Kinesis producer.",
        epilog="AWS region, credentials and endpoints come from boto3's standard configuration.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    history = sub.add_parser(
        "history",
        help="simulate the history and write transactions.csv + customer_info.csv (optionally to S3)",
        description="Simulate the history and write transactions (with labels) and customer_info as CSV.",
    )
    _add_world_arguments(history)
    history.add_argument("--out-dir", type=Path, default=Path("out/history"), help="%(default)s")
    history.add_argument("--gzip", action="store_true", help="write .csv.gz files")
    history.add_argument("--s3-uri", help="also upload the files under s3://bucket/prefix")

    stream = sub.add_parser(
        "stream",
        help="stream the live continuation of the world to Kinesis (labels to a second stream)",
        description=(
            "Continue the simulated world past its history and put transactions on a Kinesis stream at a "
            "steady rate; labels go to a second stream once the simulated label delay has passed. "
            "SIGINT/SIGTERM stop cleanly after flushing."
        ),
    )
    _add_world_arguments(stream)
    stream.add_argument("--stream", required=True, help="transaction stream name")
    stream.add_argument("--label-stream", help="label stream name (no labels when omitted)")
    stream.add_argument(
        "--rate", type=_positive_float, default=100.0, help="transactions per second (%(default)s)"
    )
    stop = stream.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=_non_negative_float, help="stop after this many seconds")
    stop.add_argument("--max-records", type=_non_negative_int, help="stop after this many transactions")
    stream.add_argument(
        "--label-delay-days",
        type=_non_negative_float,
        default=7.0,
        help="simulated days before a label is published (%(default)s)",
    )
    stream.add_argument(
        "--dead-letter",
        type=Path,
        default=Path("producer-dead-letter.jsonl"),
        help="where records given up on are written, one JSON a line (%(default)s)",
    )
    stream.add_argument(
        "--max-attempts", type=_positive_int, default=8, help="sends per record (%(default)s)"
    )
    return parser


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def run_history(args: argparse.Namespace) -> int:
    from producer.export import export_history, parse_s3_uri, upload_to_s3

    config = _world_config(args)
    if args.s3_uri:
        parse_s3_uri(args.s3_uri)  # a bad URI fails before the work, not after it
    with _progress() as progress:
        task = progress.add_task(f"simulating {config.n_days} days", total=None)
        world, history = simulate_history(config)
        progress.update(task, description="customer_info (Faker)")
        info = customer_info(world)
        progress.update(task, description="writing CSV", total=len(history), completed=0)
        paths = export_history(
            history,
            info,
            args.out_dir,
            gzip=args.gzip,
            on_progress=lambda n: progress.update(task, completed=n),
        )
        uris = []
        if args.s3_uri:
            progress.update(task, description=f"uploading to {args.s3_uri}", total=None)
            uris = upload_to_s3(paths.values(), args.s3_uri)
    frauds = int(history.TX_FRAUD.sum())
    rate = frauds / len(history) if len(history) else 0.0
    out.print(
        f"history: {len(history):,} transactions, {frauds:,} frauds ({rate:.2%}) over {config.n_days} days, "
        f"{len(info):,} customers"
    )
    for path in paths.values():
        out.print(f"wrote {path}")
    for uri in uris:
        out.print(f"uploaded {uri}")
    return EXIT_OK


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (clean shutdown) instead of raising; restored afterwards."""

    def handler(signum: int, _frame: Any) -> None:
        err.print(f"{signal.Signals(signum).name}: stopping, flushing buffered records...")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _status_line(stats: StreamStats, tx_writer: KinesisWriter, label_writer: KinesisWriter | None) -> str:
    elapsed = stats.wall_seconds or 1e-9
    line = (
        f"transactions {stats.transactions:,} ({stats.transactions / elapsed:,.0f}/s) "
        f"sent {tx_writer.stats.sent:,} retried {tx_writer.stats.retried:,} failed {tx_writer.stats.failed:,}"
    )
    if label_writer is not None:
        line += f" | labels {stats.labels:,} sent {label_writer.stats.sent:,} failed {label_writer.stats.failed:,}"
    return line + f" | event time {stats.last_tx_datetime or '-'}"


def run_stream_command(args: argparse.Namespace) -> int:
    config = _world_config(args)
    # The streams are checked first, so a wrong name fails before the simulation's work.
    tx_writer = KinesisWriter(args.stream, max_attempts=args.max_attempts)
    label_writer = (
        KinesisWriter(args.label_stream, max_attempts=args.max_attempts) if args.label_stream else None
    )
    with _progress() as progress:
        progress.add_task(f"simulating {config.n_days} days of history to continue from", total=None)
        world, history = simulate_history(config)
    live = LiveSimulator(world, after=history)

    stop = threading.Event()
    running = StreamStats(tx_writer=tx_writer.stats)  # live counters for the status line
    started = time.monotonic()

    def on_produced(tx: Any, _produced_at: int) -> None:
        running.transactions += 1
        running.last_tx_datetime = tx.TX_DATETIME

    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["stats"] = run_stream(
                live,
                tx_writer,
                label_writer,
                rate=args.rate,
                duration_s=args.duration,
                max_records=args.max_records,
                label_delay_days=args.label_delay_days,
                stop_event=stop,
                on_produced=on_produced,
            )
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="producer-stream", daemon=True)
    with _stop_on_signals(stop), Live(console=err, transient=True, refresh_per_second=4) as view:
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            running.wall_seconds = time.monotonic() - started
            view.update(_status_line(running, tx_writer, label_writer))
    failures = _dead_letters(tx_writer, label_writer, args.dead_letter)
    if "error" in result:
        raise result["error"]
    stats: StreamStats = result["stats"]
    out.print(
        f"stream: {stats.transactions:,} transactions ({stats.frauds:,} frauds) in {stats.wall_seconds:.1f}s "
        f"({stats.rate:,.0f}/s), event time {stats.first_tx_datetime} .. {stats.last_tx_datetime}, "
        f"stopped by {stats.stopped_by}"
    )
    out.print(
        f"  {args.stream}: sent {tx_writer.stats.sent:,}, failed {tx_writer.stats.failed:,}, "
        f"retried {tx_writer.stats.retried:,}, throttled {tx_writer.stats.throttled:,}"
    )
    if label_writer is not None:
        out.print(
            f"  {args.label_stream}: sent {label_writer.stats.sent:,}, failed {label_writer.stats.failed:,}, "
            f"retried {label_writer.stats.retried:,}, not yet due {stats.labels_pending:,}"
        )
    return EXIT_FAILED if failures else EXIT_OK


def _dead_letters(tx_writer: KinesisWriter, label_writer: KinesisWriter | None, path: Path) -> int:
    """Write every record given up on (or left unsent by an error) to `path`; returns how many."""
    lines = []
    for writer in (tx_writer, label_writer):
        if writer is not None:
            writer.abandon("NotSent")
            lines += [
                f'{{"stream": "{writer.stream_name}", "record": {r.to_json()}}}' for r in writer.given_up
            ]
    if lines:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        err.print(
            f"error: {len(lines):,} records given up on, written to {path}", markup=False, highlight=False
        )
    return len(lines)


def _describe_client_error(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"AWS {error.get('Code', '?')}: {error.get('Message', '')} ({exc.operation_name})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"history": run_history, "stream": run_stream_command}[args.command]
    try:
        return command(args)
    except (UsageError, ProducerError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except (NoCredentialsError, PartialCredentialsError):
        err.print(
            "error: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
        )
        return EXIT_USAGE
    except NoRegionError:
        err.print("error: no AWS region configured (set AWS_DEFAULT_REGION or AWS_REGION)")
        return EXIT_USAGE
    except EndpointConnectionError as exc:
        err.print(f"error: cannot reach the AWS endpoint: {exc}", markup=False, highlight=False)
        return EXIT_FAILED
    except ClientError as exc:
        err.print(f"error: {_describe_client_error(exc)}", markup=False, highlight=False)
        return EXIT_FAILED
    except OSError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
