"""`python -m local up`: the whole AWS side of the product on loopback, with one command.

Moto servers (Kinesis, S3, SNS, SQS; DynamoDB: two child processes, see MotoProcess) and the Redshift
emulator's Data API endpoint on free 127.0.0.1 ports; the resources template.yaml declares, with the same names; the SQL migrations
applied by the `apply_sql` handler; and the scheduler that invokes the other handlers in-process.
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.seed import SeedError
from local.template import REPO, TEMPLATE, TemplateError

DEFAULT_DATA_DIR = REPO / ".local-data"
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
# moto serves the services in three processes, each with its own GIL (one process of moto is one
# Python thread's worth of CPU at a time): the stream (Kinesis, S3), the alert fan-out (SNS, SQS: SNS
# delivers to SQS inside moto, so those two stay together) and the card locks (DynamoDB). At 2,000 tx/s
# with ~3.5 % alerts, SNS+SQS sharing a process with Kinesis put the publisher's PublishBatch calls
# behind the stream's (alert to published p50 3.2 s), and DynamoDB sharing one with SNS+SQS saturated
# it (to consumer p50 2.7 s). The first group's process is the one `--moto-port` names.
MOTO_PROCESSES = (("KINESIS", "S3"), ("SNS", "SQS"), ("DYNAMODB",))
MOTO_SERVICES = tuple(service for group in MOTO_PROCESSES for service in group)
# Lambda-side switches: no X-Ray daemon locally; the rest comes from the template.
warnings.filterwarnings("ignore", message="No application metrics to publish")
LOCAL_FUNCTION_ENV = {"POWERTOOLS_TRACE_DISABLED": "true"}
# How the local scheduler differs from AWS's (see local.scheduler): score_and_alert back to back, not
# idle for the last ~10 s of each minute; several act_on_alert batches at once, as Lambda's SQS poller.
LOCAL_SCHEDULING: dict[str, Any] = {"back_to_back": ("score_and_alert",), "queue_pollers": 4}
# Two stop-the-world pauses are kept out of the live pipeline (see Stack._quiet_pauses):
# - Python's GC: while the scheduler runs, the objects that exist when it starts (modules, botocore
#   models, the warehouse's translations, a loaded history) are frozen out of the collector, and young
#   collections run less often; a full collection over that heap stopped every thread for up to 1.4 s
#   (bench/e2e.py at 1,000 tx/s), the largest of the alert latency's spikes.
# - DuckDB's checkpoint: the warehouse checkpoints when the scheduler starts, and then only once its
#   write-ahead log reaches CHECKPOINT_THRESHOLD (at 1,000 tx/s the WAL grows by ~45 MB a minute, and
#   DuckDB's default 16 MB made a statement's commit checkpoint every ~20 s, for 0.1-0.5 s).
GC_THRESHOLDS = (10_000, 10, 10)
CHECKPOINT_THRESHOLD = "1GB"
LOCK_FILE = "stack.pid"
WAREHOUSE_FILE = "warehouse.duckdb"

log = logging.getLogger(__name__)


class StackError(Exception):
    """A problem the user can fix, reported as one line."""


@dataclass
class StackOptions:
    data_dir: Path = DEFAULT_DATA_DIR
    moto_port: int = 0  # 0: a free port
    redshift_port: int = 0
    fresh: bool = False  # wipe a data directory left by an earlier run
    template: Path = TEMPLATE
    parameters: Mapping[str, Any] = field(default_factory=dict)  # template parameter overrides
    env_overrides: Mapping[str, str] = field(default_factory=dict)  # function settings for this run
    scheduler: bool = True
    run_now: tuple[str, ...] = ()  # scheduled functions invoked at start
    apply_migrations: bool = True
    refresh_interval_s: float = 1.0  # streaming MVs' AUTO REFRESH period (the emulator's default)


class Stack:
    """Start with `with Stack(options) as stack:`; `stack.exports()` gives the env vars to paste."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.motos: dict[str, MotoProcess] = {}  # "KINESIS+S3" ... -> its process (MOTO_PROCESSES)
        self.moto_url = ""  # the first group's process
        self.endpoints: dict[str, str] = {}  # service (KINESIS, ...) -> its moto URL
        self.engine: Any = None
        self.redshift: Any = None
        self.template: Any = None
        self.resources: Any = None
        self.scheduler: Any = None
        self.migrations_result: dict[str, Any] = {}
        self._locked = False
        self._saved_env: dict[str, str] | None = None
        self._heap_frozen = False  # by _quiet_pauses, until stop()

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        _require_dependencies()
        opts = self.options
        _check_port(opts.moto_port, "--moto-port")
        _check_port(opts.redshift_port, "--redshift-port")
        self.template = _load(opts)  # a broken template fails before anything starts
        self._prepare_data_dir()
        self._saved_env = dict(os.environ)  # the stack's endpoints and settings leave with it
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        self._start_moto()
        self._start_redshift()
        self._bootstrap()
        if opts.apply_migrations:
            self.migrations_result = self.apply_migrations()
        if opts.scheduler:
            self.start_scheduler(opts.run_now)

    def start_scheduler(self, run_now: tuple[str, ...] = (), **kwargs: Any) -> Any:
        from local.scheduler import Scheduler

        settings = {**LOCAL_SCHEDULING, **kwargs}
        self.scheduler = Scheduler(self.resources, region=REGION, run_now=run_now, **settings)
        self._quiet_pauses()
        self.scheduler.start()
        return self.scheduler

    def _quiet_pauses(self) -> None:
        """See GC_THRESHOLDS and CHECKPOINT_THRESHOLD; the GC settings are undone by stop()."""
        if self.engine is not None:
            import duckdb

            con = self.engine.cursor()
            try:
                con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
                try:
                    con.execute("CHECKPOINT")
                except duckdb.Error:  # an AUTO REFRESH is writing: the WAL's next checkpoint takes it
                    log.debug("no checkpoint at scheduler start: a write transaction is active")
            finally:
                con.close()
        if not self._heap_frozen:
            _FROZEN.acquire()
            self._heap_frozen = True

    def stop(self) -> None:
        """Stop in reverse order; safe to call twice and after a failed start."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self._heap_frozen:
            _FROZEN.release()
            self._heap_frozen = False
        if self.redshift is not None:
            self.redshift.shutdown()
            self.redshift = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        for moto in self.motos.values():
            moto.stop()
        self.motos = {}
        if self._locked:
            (self.options.data_dir / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False
        if self._saved_env is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            self._saved_env = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- steps ----------------------------------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        data_dir = self.options.data_dir
        lock = data_dir / LOCK_FILE
        if lock.exists():
            pid = _read_pid(lock)
            if pid and _alive(pid) and pid != os.getpid():
                raise StackError(f"data directory {data_dir} is in use by another local stack (pid {pid})")
        if data_dir.exists() and any(data_dir.iterdir()):
            if not self.options.fresh:
                raise StackError(
                    f"data directory {data_dir} holds an earlier run's warehouse, whose stream checkpoints "
                    "point at streams that lived in memory and are gone; rerun with --fresh to wipe it "
                    "(or choose another --data-dir)"
                )
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        lock.write_text(str(os.getpid()))
        self._locked = True

    def _start_moto(self) -> None:
        for index, group in enumerate(MOTO_PROCESSES):
            self.motos["+".join(group)] = MotoProcess(self.options.moto_port if index == 0 else 0)
        for moto in self.motos.values():
            moto.launch()  # they import moto at once
        urls = [moto.ready() for moto in self.motos.values()]
        self.moto_url = urls[0]
        for group, url in zip(MOTO_PROCESSES, urls, strict=True):
            for service in group:
                self.endpoints[service] = url
                os.environ[f"AWS_ENDPOINT_URL_{service}"] = url

    def _start_redshift(self) -> None:
        from local.redshift.engine import Engine
        from local.redshift.server import start_server

        self.engine = Engine(
            self.options.data_dir / WAREHOUSE_FILE, auto_refresh_interval=self.options.refresh_interval_s
        )
        try:
            self.redshift = start_server(self.engine, "127.0.0.1", self.options.redshift_port)
        except OSError as exc:
            raise StackError(
                f"cannot listen on 127.0.0.1:{self.options.redshift_port}: {exc.strerror}"
            ) from exc
        os.environ["AWS_ENDPOINT_URL_REDSHIFT_DATA"] = self.redshift.url

    def _bootstrap(self) -> None:
        from local.bootstrap import create_resources

        self.template.moto_url = self.moto_url
        self.resources = create_resources(self.template)
        for spec in self.resources.functions.values():
            spec.environment.update({**LOCAL_FUNCTION_ENV, **self.options.env_overrides})
        os.environ.update(self.function_environment())

    def function_environment(self) -> dict[str, str]:
        """The union of the functions' template environments: they share this one process.

        Settings read at import (Powertools' service name) get each function's own value (see
        local.lambdas); a setting read later that differs between functions (STATEMENT_TIMEOUT_SECONDS)
        takes the value of the first function that declares it.
        """
        env: dict[str, str] = {}
        for spec in self.resources.functions.values():
            for key, value in spec.environment.items():
                if key in env and env[key] != value and not key.startswith("POWERTOOLS_"):
                    log.info(
                        "%s differs between functions (%r, %r); the process uses %r",
                        key,
                        env[key],
                        value,
                        env[key],
                    )
                env.setdefault(key, value)
        return env

    def function(self, dir_name: str) -> Any:
        """The FunctionSpec whose code lives in functions/<dir_name>."""
        for spec in self.resources.functions.values():
            if spec.dir_name == dir_name:
                return spec
        raise StackError(f"template.yaml declares no function with code in functions/{dir_name}")

    def invoke(self, dir_name: str, event: dict[str, Any]) -> Any:
        from local.lambdas import invoke

        stop = self.scheduler.stop_event if self.scheduler is not None else None
        return invoke(self.function(dir_name), event, region=REGION, stop=stop)

    def apply_migrations(self) -> dict[str, Any]:
        """Run each custom resource of the template (apply_sql) as CloudFormation would on create.

        The handler answers through the event's ResponseURL; locally that is a presigned PUT to the
        stack's own bucket, read back here, so a FAILED migration stops the stack with its reason.
        """
        import boto3

        from local.bootstrap import custom_resources
        from local.scheduler import event_file

        results = {}
        for logical_id, function_name, properties in custom_resources(self.template):
            spec = next((s for s in self.resources.functions.values() if s.name == function_name), None)
            if spec is None:
                raise StackError(f"custom resource {logical_id}: no function {function_name} in the template")
            path = event_file(spec, ("create",))
            event = json.loads(path.read_text()) if path else {}
            bucket = next(iter(self.resources.buckets.values()), None)
            if bucket is None:
                raise StackError("the template declares no S3 bucket to receive custom resource responses")
            s3 = boto3.client("s3")
            key = f"cloudformation-responses/{logical_id}/{uuid.uuid4()}"
            event.update(
                {
                    "RequestType": "Create",
                    "ResponseURL": s3.generate_presigned_url(
                        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
                    ),
                    "StackId": self.template.ref("AWS::StackId"),
                    "RequestId": str(uuid.uuid4()),
                    "LogicalResourceId": logical_id,
                    "ResourceType": self.template.resources[logical_id]["Type"],
                    "ResourceProperties": {
                        **event.get("ResourceProperties", {}),
                        **properties,
                        "ServiceToken": self.template.arn("lambda", function_name),
                    },
                }
            )
            self.invoke(spec.dir_name, event)
            try:
                response = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except s3.exceptions.NoSuchKey:
                raise StackError(f"custom resource {logical_id}: {function_name} sent no response") from None
            if response.get("Status") != "SUCCESS":
                raise StackError(
                    f"migrations failed ({logical_id}): {response.get('Reason', 'no reason given')}"
                )
            results[logical_id] = response
        return results

    def exports(self) -> dict[str, str]:
        out = dict(FAKE_CREDENTIALS)
        for service in MOTO_SERVICES:
            out[f"AWS_ENDPOINT_URL_{service}"] = self.endpoints[service]
        out["AWS_ENDPOINT_URL_REDSHIFT_DATA"] = self.redshift.url
        return out


class _FrozenHeap:
    """The process-wide GC settings of GC_THRESHOLDS, held while any stack's scheduler runs (tests run
    several stacks in one process): the first acquire freezes, the last release restores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: tuple[int, int, int] = gc.get_threshold()

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved = gc.get_threshold()
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                gc.unfreeze()
                gc.set_threshold(*self._saved)


_FROZEN = _FrozenHeap()


def _load(options: StackOptions) -> Any:
    from local.template import load_template

    return load_template(options.template, region=REGION, overrides=options.parameters)


class MotoProcess:
    """The moto server in a child process of the stack: its own interpreter, so moto's request handling
    (about 60% of the stack's GIL time at 1,000 tx/s, measured with py-spy --gil) runs next to the
    producer, the Data API and the handlers instead of taking turns with them on one core.

    The child ignores Ctrl-C (the terminal sends it to the whole process group; the parent stops it) and
    exits when its stdin closes: when the parent stops it or goes away."""

    def __init__(self, port: int = 0, start_timeout_s: float = 60.0) -> None:
        self.port = port
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        """Start the child and wait until it serves; its URL."""
        self.launch()
        return self.ready()

    def launch(self) -> None:
        """Start the child without waiting for it (see ready)."""
        code = "import sys; from local.stack import serve_moto; serve_moto(int(sys.argv[1]))"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        self._process = subprocess.Popen(
            [sys.executable, "-c", code, str(self.port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> str:
        """Wait until the launched child serves; its URL."""
        assert self._process is not None, "launch() first"
        ready, _, _ = select.select([self._process.stdout], [], [], self.start_timeout_s)
        line = self._process.stdout.readline().split() if ready else []  # type: ignore[union-attr]
        if len(line) == 3 and line[0] == "ok":
            return f"http://{line[1]}:{int(line[2])}"
        self.stop()
        reason = " ".join(line[1:]) if line[:1] == ["error"] else "no answer"
        raise StackError(f"the moto server did not start: {reason}")

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (for CPU accounting in bench/e2e.py)."""
        return self._process.pid if self._process is not None else None

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout_s)
        process.stdout.close()  # type: ignore[union-attr]


def serve_moto(port: int) -> None:
    """The child process: moto with the local speed-ups until stdin closes; "ok host port" or
    "error reason" on stdout first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from moto.server import ThreadedMotoServer

    from local import moto_speedups

    moto_speedups.apply()
    _cache_moto_dispatch()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per AWS call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return
    host, bound = server.get_host_and_port()
    print(f"ok {host} {bound}", flush=True)
    sys.stdin.read()
    server.stop()


def _cache_moto_dispatch() -> None:
    """Remember which moto backend serves a host name. moto re-derives it on every request (listing
    and stat-ing its ~150 module folders under a global lock): about a third of a DynamoDB call's CPU."""
    from moto.moto_server import werkzeug_app

    dispatcher = werkzeug_app.DomainDispatcherApplication
    if getattr(dispatcher, "_local_stack_cached", False):
        return
    lookup = dispatcher.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def cached(self: Any, host: str | None) -> Any:
        if host not in backends:
            backends[host] = lookup(self, host)
        return backends[host]

    dispatcher.get_backend_for_host = cached  # type: ignore[method-assign]
    dispatcher._local_stack_cached = True  # type: ignore[attr-defined]


# -- checks -------------------------------------------------------------------------------------------


def _require_dependencies() -> None:
    for module in ("moto.server", "flask", "duckdb", "sqlglot", "yaml", "local.redshift.server"):
        try:
            __import__(module)
        except ModuleNotFoundError as exc:
            raise StackError(f"missing dependency '{exc.name}': run `make install`") from None


def _check_port(port: int, option: str) -> None:
    if not port:
        return
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StackError(
                f"port {port} on 127.0.0.1 is {reason} ({option}); choose another, or 0 for a free one"
            ) from None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- CLI ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="warehouse files (default .local-data)"
    )
    parser.add_argument("--fresh", action="store_true", help="wipe a data directory left by an earlier run")
    parser.add_argument("--moto-port", type=int, default=0, help="moto server port (default: a free one)")
    parser.add_argument("--redshift-port", type=int, default=0, help="Data API port (default: a free one)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not invoke the functions on schedule")
    parser.add_argument(
        "--template", type=Path, default=TEMPLATE, help="SAM template (default template.yaml)"
    )
    parser.add_argument(
        "--customers", type=int, default=500, help="customers of the seeded history (default 500)"
    )
    parser.add_argument("--days", type=int, default=60, help="days of seeded history (default 60)")
    parser.add_argument("--seed", type=int, default=42, help="simulation seed")
    parser.add_argument("--no-history", action="store_true", help="no history, no model: only the migrations")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = StackOptions(
        data_dir=args.data_dir,
        moto_port=args.moto_port,
        redshift_port=args.redshift_port,
        fresh=args.fresh,
        scheduler=False,
        apply_migrations=False,
        template=args.template,
    )
    stack = Stack(options)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stack.start()
        _seed(stack, args)
        if not args.no_scheduler:
            stack.start_scheduler(run_now=("score_and_alert",))  # EventBridge fires within its first minute
    except (StackError, TemplateError, SeedError) as exc:
        stack.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else during start-up still gets one line, not a traceback
        stack.stop()
        print(f"error: the local stack failed to start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        print_banner(stack)
        while not stop.wait(0.5):
            pass
        print("stopping the local stack...", flush=True)
    finally:
        stack.stop()
    return 0


def _seed(stack: Stack, args: argparse.Namespace) -> None:
    """History in the warehouse and a promoted model, so the stack scores what a producer sends."""
    from rich.console import Console

    from local.seed import load_history, train_first_model

    if args.no_history:
        stack.apply_migrations()
        return
    console = Console(stderr=True)
    seeded = load_history(
        stack,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        work_dir=args.data_dir,
        console=console,
    )
    train_first_model(stack, seeded, console)


def print_banner(stack: Stack) -> None:
    lines = ["# the local stack is up; paste these into another shell:"]
    lines += [f"export {k}={v}" for k, v in stack.exports().items()]
    res = stack.resources
    lines.append("# resources (names as in template.yaml):")
    for label, values in (
        ("streams", res.streams),
        ("buckets", res.buckets),
        ("topics", res.topics),
        ("queues", res.queues),
        ("tables", res.tables),
    ):
        lines.append(f"#   {label}: " + ", ".join(values.values()))
    if stack.scheduler is not None:
        for spec in res.functions.values():
            jobs = [f"every {s.period_s:g}s" for s in spec.schedules] + (["SQS"] if spec.queue_arn else [])
            if jobs:
                lines.append(f"#   {spec.name}: " + ", ".join(jobs))
    lines.append("# Ctrl-C stops it.")
    print("\n".join(lines), flush=True)
