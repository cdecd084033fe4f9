"""Fault-injection harness: one seeded local pipeline for the whole folder, and the invariants.

The pipeline is the real one, in one process: moto (Kinesis, S3, SNS, SQS, DynamoDB) and the Redshift
emulator's Data API endpoint on loopback, the resources and migrations of template.yaml and sql/, a
model trained by the train_model handler (CREATE MODEL), score_and_alert invoked like the scheduler
does (one cycle per call, so each test decides when), and act_on_alert fed from the SQS queue by the
local scheduler's event-source loop. Each scenario streams its own slice of the seeded live world, so
its invariants are checked on its own transaction ids, and the global ones on everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pytest

# Big enough for a handbook-like fraud rate (a tiny world has a third of its cards compromised, and
# every alert costs act_on_alert a few DynamoDB round trips), small enough to load in seconds.
WORLD = {"n_customers": 400, "n_terminals": 800, "n_days": 60, "seed": 11}
# One scoring cycle per invocation (the stop margin is beyond any timeout); faster polling of statements.
FUNCTION_ENV = {
    "POLL_INTERVAL_SECONDS": "0",
    "STOP_MARGIN_SECONDS": "100000",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "STATEMENT_TIMEOUT_SECONDS": "120",
    "MODEL_MAX_RUNTIME": "15",  # CREATE MODEL keeps the rounds boosted by then: quality is not under test
}
REPORT: list[dict[str, Any]] = []  # one row per scenario, printed at the end of the run


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


@dataclass
class Snapshot:
    """What the stores hold for a range of transaction ids (and the global no-duplicate checks)."""

    ingested_rows: int = 0
    ingested_distinct: int = 0
    scored_rows: int = 0
    scored_distinct: int = 0
    flagged: int = 0
    outbox_rows: int = 0
    outbox_pending: int = 0
    outbox_sent: int = 0
    cases: int = 0
    card_locks: int = 0  # sum of lock_count over the cards of these alerts
    history_rows: int = 0
    rejects: int = 0
    duplicate_scores_anywhere: int = 0
    duplicate_alerts_anywhere: int = 0

    def brief(self) -> dict[str, int]:
        return {
            "ingested": self.ingested_distinct,
            "scored": self.scored_rows,
            "flagged": self.flagged,
            "outbox": self.outbox_rows,
            "sent": self.outbox_sent,
            "cases": self.cases,
            "locks": self.card_locks,
            "history": self.history_rows,
        }


@dataclass
class Pipeline:
    stack: Any
    world: Any
    history_rows: int
    live: Iterator[Any]
    customer_info: list[dict[str, Any]]
    threshold: float
    model: str
    actor: Any  # the local scheduler delivering the alert queue to act_on_alert
    deliveries: dict[int, int] = field(default_factory=dict)  # transaction id -> SQS deliveries seen

    # -- producing ------------------------------------------------------------------------------------

    def next_transactions(self, n: int) -> list[Any]:
        return [next(self.live) for _ in range(n)]

    @staticmethod
    def encode(transactions: list[Any]) -> list[bytes]:
        from producer.stream import transaction_record

        now_ms = int(time.time() * 1000)
        return [transaction_record(tx, now_ms) for tx in transactions]

    def put_raw(self, records: list[tuple[bytes, str]]) -> None:
        """PutRecords as they are (data, partition key), asserting Kinesis accepted every one."""
        import boto3

        kinesis = boto3.client("kinesis")
        for start in range(0, len(records), 200):
            chunk = records[start : start + 200]
            response = kinesis.put_records(
                StreamName=self.sql.tx_stream, Records=[{"Data": d, "PartitionKey": k} for d, k in chunk]
            )
            assert response.get("FailedRecordCount", 0) == 0, response

    def write(self, transactions: list[Any], client: Any | None = None) -> Any:
        """Send through the project's producer (KinesisWriter, retries and all); returns its stats."""
        from producer.kinesis import KinesisWriter

        with KinesisWriter(self.sql.tx_stream, client=client, base_delay_s=0.01, max_delay_s=0.2) as writer:
            for tx, data in zip(transactions, self.encode(transactions), strict=True):
                writer.put(data, partition_key=str(tx.CUSTOMER_ID))
        assert not writer.given_up, writer.given_up[:3]
        return writer.stats

    # -- running the functions ------------------------------------------------------------------------

    @cached_property
    def api(self) -> Any:
        from fraud_common.dataapi import DataApi
        from fraud_common.settings import WarehouseSettings

        return DataApi(WarehouseSettings.from_env())

    @cached_property
    def sql(self) -> Any:
        from fraud_common.settings import SqlSettings

        return SqlSettings.from_env()

    def score_and_alert(self) -> dict[str, Any]:
        return self.stack.invoke("score_and_alert", {"source": "reliability"})

    def wait_ingested(self, ids: set[int], timeout_s: float = 30) -> None:
        lo, hi = min(ids), max(ids)

        def done() -> bool:
            rows = self.api.query(
                "SELECT count(DISTINCT transaction_id) AS n FROM cust_payment_tx_stream"
                " WHERE transaction_id BETWEEN :lo AND :hi",
                {"lo": lo, "hi": hi},
            )
            return int(rows[0]["n"]) >= len(ids)

        wait_for(done, timeout_s, f"{len(ids)} transactions ingested by the streaming MV")

    def drain(self, ids: set[int], timeout_s: float = 60) -> Snapshot:
        """score_and_alert until every id is scored and the outbox has nothing pending, then wait for
        act_on_alert to have a case for every alert."""
        self.wait_ingested(ids)
        deadline = time.monotonic() + timeout_s
        while True:
            self.score_and_alert()
            snap = self.snapshot(ids)
            if snap.scored_distinct >= len(ids) and snap.outbox_pending == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained after {timeout_s} s: {snap}")
            time.sleep(0.3)
        wait_for(lambda: self.snapshot(ids).cases >= snap.outbox_rows, timeout_s, "a case for every alert")
        time.sleep(1.5)  # let a duplicate delivery, if any, reach act_on_alert before the counts
        return self.snapshot(ids)

    # -- reading the stores ---------------------------------------------------------------------------

    def cases_for(self, ids: set[int]) -> tuple[dict[int, dict], dict[int, dict]]:
        import boto3
        from fraud_common.settings import ActionSettings

        table = boto3.resource("dynamodb").Table(ActionSettings.from_env().cases_table)
        items, kwargs = [], {}
        while True:
            page = table.scan(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        cases = {
            int(i["pk"][5:]): i for i in items if i["pk"].startswith("CASE#") and int(i["pk"][5:]) in ids
        }
        cards = {int(i["pk"][5:]): i for i in items if i["pk"].startswith("CARD#")}
        return cases, cards

    def snapshot(self, ids: set[int]) -> Snapshot:
        api = self.api
        lo, hi = (min(ids), max(ids)) if ids else (0, -1)
        p = {"lo": lo, "hi": hi}
        snap = Snapshot()
        row = api.query(
            "SELECT count(*) AS n, count(DISTINCT transaction_id) AS d FROM cust_payment_tx_stream"
            " WHERE transaction_id BETWEEN :lo AND :hi",
            p,
        )[0]
        snap.ingested_rows, snap.ingested_distinct = int(row["n"]), int(row["d"])
        scores = api.query(
            "SELECT transaction_id, score FROM fraud_scores WHERE transaction_id BETWEEN :lo AND :hi", p
        )
        snap.scored_rows = len(scores)
        snap.scored_distinct = len({int(r["transaction_id"]) for r in scores})
        flagged = {int(r["transaction_id"]) for r in scores if float(r["score"]) >= self.threshold}
        snap.flagged = len(flagged)
        outbox = api.query(
            "SELECT transaction_id, status FROM fraud_alerts WHERE transaction_id BETWEEN :lo AND :hi", p
        )
        snap.outbox_rows = len(outbox)
        snap.outbox_pending = sum(1 for r in outbox if r["status"] == "pending")
        snap.outbox_sent = sum(1 for r in outbox if r["status"] == "sent")
        cases, cards = self.cases_for(ids)
        snap.cases = len(cases)
        alerted_cards = {int(c["customer_id"]) for c in cases.values()}
        snap.card_locks = sum(
            len([t for t in cards[c].get("transaction_ids", set()) if lo <= int(t) <= hi])
            for c in alerted_cards
            if c in cards
        )
        snap.history_rows = int(api.query("SELECT count(*) AS n FROM cust_payment_tx_history")[0]["n"])
        snap.rejects = int(api.query("SELECT count(*) AS n FROM cust_payment_tx_rejects")[0]["n"])
        snap.duplicate_scores_anywhere = int(
            api.query("SELECT count(*) - count(DISTINCT transaction_id) AS n FROM fraud_scores")[0]["n"]
        )
        snap.duplicate_alerts_anywhere = int(
            api.query("SELECT count(*) - count(DISTINCT transaction_id) AS n FROM fraud_alerts")[0]["n"]
        )
        return snap

    def check_invariants(self, ids: set[int], snap: Snapshot | None = None) -> Snapshot:
        """Every valid transaction ingested once and scored once; every flagged one alerted once, sent,
        and acted on once (one case, one lock entry); the history untouched; no duplicates anywhere."""
        snap = snap or self.snapshot(ids)
        lo, hi = min(ids), max(ids)
        scored = {
            int(r["transaction_id"])
            for r in self.api.query(
                "SELECT transaction_id FROM fraud_scores WHERE transaction_id BETWEEN :lo AND :hi",
                {"lo": lo, "hi": hi},
            )
        }
        assert scored == ids, (
            f"scored != valid: missing {sorted(ids - scored)[:5]}, extra {sorted(scored - ids)[:5]}"
        )
        assert snap.scored_rows == len(ids), "a transaction was scored twice"
        assert snap.ingested_distinct == len(ids)
        assert snap.outbox_rows == snap.flagged, "every flagged score alerted once"
        assert snap.outbox_pending == 0 and snap.outbox_sent == snap.outbox_rows
        assert snap.cases == snap.outbox_rows, "one case per alert"
        assert snap.card_locks == snap.outbox_rows, "one lock entry per alert"
        cases, cards = self.cases_for(ids)
        for card_id in {int(c["customer_id"]) for c in cases.values()}:
            card = cards[card_id]
            assert int(card["lock_count"]) == len(card["transaction_ids"]), f"card {card_id} locked twice"
        assert snap.history_rows == self.history_rows
        assert snap.duplicate_scores_anywhere == 0 and snap.duplicate_alerts_anywhere == 0
        return snap


# -- fault injection through botocore's own events: the calls that are not faulted stay real ------------


@dataclass
class Injector:
    """Faults on one operation of a boto3 client (or of every client the default session creates
    meanwhile: `client=None`). `fault(params, call_number)` returns None (the call goes through), a
    (http, parsed) pair (the client sees that response) or raises (the client sees that error).
    stage "call": before botocore's retry loop (the caller sees the fault as is); stage "send": each
    HTTP attempt, inside the retry loop (botocore retries what it deems retryable), where `fault`
    gets the prepared request and returns an AWSResponse or None."""

    client: Any
    service: str
    operation: str
    fault: Callable[[Any, int], Any]
    stage: str = "call"
    calls: int = 0
    injected: int = 0

    @property
    def events(self) -> Any:
        if self.client is not None:
            return self.client.meta.events
        import boto3

        return boto3._get_default_session().events

    def __enter__(self) -> Injector:
        prefix = "before-call" if self.stage == "call" else "before-send"
        self._events = [
            (f"before-parameter-build.{self.service}.{self.operation}", self._stash),
            (f"{prefix}.{self.service}.{self.operation}", self._call if self.stage == "call" else self._send),
        ]
        for event, handler in self._events:
            self.events.register(event, handler, unique_id=f"inject-{id(self)}-{event}")
        return self

    def __exit__(self, *exc: object) -> None:
        for event, _handler in self._events:
            self.events.unregister(event, unique_id=f"inject-{id(self)}-{event}")

    def _stash(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["api_params"] = dict(params)

    def _call(self, context: dict[str, Any], **_: Any) -> Any:
        return self._apply(context["api_params"])

    def _send(self, request: Any, **_: Any) -> Any:
        return self._apply(request)

    def _apply(self, subject: Any) -> Any:
        self.calls += 1
        try:
            outcome = self.fault(subject, self.calls)
        except BaseException:
            self.injected += 1
            raise
        if outcome is not None:
            self.injected += 1
        return outcome


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def http_error(code: str, status: int) -> Any:
    """An HTTP error response of a JSON-protocol service, as the wire would carry it (stage "send")."""
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"__type": code, "message": "injected fault"}).encode()
    return AWSResponse(
        "http://127.0.0.1/injected", status, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body)
    )


def send_then_lose_response(request: Any) -> None:
    """The request reaches the service and runs; its response is lost (stage "send"): a read timeout."""
    import urllib.request

    from botocore.exceptions import ReadTimeoutError

    forwarded = urllib.request.Request(request.url, data=request.body, method=request.method)
    for key, value in request.headers.items():
        forwarded.add_header(key, value.decode() if isinstance(value, bytes) else value)
    with urllib.request.urlopen(forwarded, timeout=30) as response:
        response.read()
    raise ReadTimeoutError(endpoint_url=request.url)


def error_response(code: str, status: int = 400) -> tuple[Any, dict[str, Any]]:
    """What botocore hands back for a service error (e.g. throttling): the client raises ClientError."""
    from botocore.awsrequest import AWSResponse

    parsed = {
        "Error": {"Code": code, "Message": "injected fault"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return AWSResponse("http://127.0.0.1/injected", status, {}, None), parsed


def ok_response(parsed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    return AWSResponse("http://127.0.0.1/injected", 200, {}, None), {
        **parsed,
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def partial_put_records(params: dict[str, Any], fail: Callable[[int], bool]) -> tuple[Any, dict[str, Any]]:
    """A PutRecords where Kinesis really wrote some records and throttled the others, in order."""
    import boto3

    records = params["Records"]
    keep = [i for i in range(len(records)) if not fail(i)]
    written = iter([])
    if keep:
        clean = boto3.Session().client("kinesis")  # a new session: no injector hooks on it
        written = iter(
            clean.put_records(StreamName=params["StreamName"], Records=[records[i] for i in keep])["Records"]
        )
    out = [
        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"}
        if fail(i)
        else next(written)
        for i in range(len(records))
    ]
    return ok_response({"FailedRecordCount": len(records) - len(keep), "Records": out})


def partial_publish_batch(params: dict[str, Any], fail: Callable[[int], bool]) -> tuple[Any, dict[str, Any]]:
    """A PublishBatch where SNS really published some entries and failed the others."""
    import boto3

    entries = params["PublishBatchRequestEntries"]
    keep = [e for i, e in enumerate(entries) if not fail(i)]
    successful = []
    if keep:
        clean = boto3.Session().client("sns")  # a new session: no injector hooks on it
        successful = clean.publish_batch(TopicArn=params["TopicArn"], PublishBatchRequestEntries=keep)[
            "Successful"
        ]
    failed = [
        {"Id": e["Id"], "Code": "InternalError", "Message": "injected", "SenderFault": False}
        for i, e in enumerate(entries)
        if fail(i)
    ]
    return ok_response({"Successful": successful, "Failed": failed})


def handler_module(stack: Any, dir_name: str) -> Any:
    """The loaded module of a function's handler (its cached clients are the ones faults go on)."""
    import sys

    from local.lambdas import load_handler

    spec = stack.function(dir_name)
    load_handler(spec)
    return sys.modules[f"lambda_{spec.logical_id}"]


def record(
    scenario: str, injected: str, before: Snapshot | dict, after: Snapshot | dict, **extra: Any
) -> None:
    """Add a row to the closing table and print it (visible with -s)."""
    row = {
        "scenario": scenario,
        "injected": injected,
        "before": before.brief() if isinstance(before, Snapshot) else before,
        "after": after.brief() if isinstance(after, Snapshot) else after,
        **extra,
    }
    REPORT.append(row)
    print(f"\n[reliability] {json.dumps(row)}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section("reliability scenarios: injected, counts before -> after")
    for row in REPORT:
        terminalreporter.write_line(f"{row['scenario']}: {row['injected']}")
        terminalreporter.write_line(f"    before {row['before']}")
        terminalreporter.write_line(f"    after  {row['after']}")
        rest = {k: v for k, v in row.items() if k not in ("scenario", "injected", "before", "after")}
        if rest:
            terminalreporter.write_line(f"    {rest}")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The seeded pipeline: history loaded by COPY, a model trained and promoted, act_on_alert running."""
    from fraud_common import queries
    from fraud_common.settings import AlertSettings, SqlSettings

    from local.stack import Stack, StackOptions
    from producer.export import export_history, upload_to_s3
    from producer.simulator import LiveSimulator, WorldConfig, customer_info, simulate_history

    tmp = tmp_path_factory.mktemp("reliability")
    stack = Stack(
        StackOptions(
            data_dir=tmp / "data",
            fresh=True,
            scheduler=False,
            apply_migrations=False,
            env_overrides=FUNCTION_ENV,
        )
    )
    stack.start()
    try:
        sql = SqlSettings.from_env()
        world, history = simulate_history(WorldConfig(**WORLD))
        info = customer_info(world)
        paths = export_history(history, info, tmp / "history", gzip=True)
        upload_to_s3([paths["transactions"]], f"s3://{sql.s3_bucket}/history/transactions")
        upload_to_s3([paths["customer_info"]], f"s3://{sql.s3_bucket}/history/customer_info")
        t0 = time.monotonic()
        stack.apply_migrations()
        print(f"[setup] migrations+COPY {time.monotonic() - t0:.1f}s")
        pipeline_ = Pipeline(
            stack=stack,
            world=world,
            history_rows=len(history),
            live=iter(LiveSimulator(world, after=history)),
            customer_info=info,
            threshold=AlertSettings.from_env().threshold,
            model="",
            actor=None,
        )
        t0 = time.monotonic()
        queries.run(pipeline_.api, "featurise_history", sql.placeholders())
        print(f"[setup] featurise {time.monotonic() - t0:.1f}s")
        t0 = time.monotonic()
        pipeline_.model = _train(stack, pipeline_)
        print(f"[setup] train {time.monotonic() - t0:.1f}s")
        pipeline_.actor = stack.start_scheduler(only=("act_on_alert",), on_sqs_batch=_counter(pipeline_))
        yield pipeline_
    finally:
        stack.stop()


def _counter(p: Pipeline) -> Callable[[Any, list[dict[str, Any]]], None]:
    def on_batch(_spec: Any, records: list[dict[str, Any]]) -> None:
        for r in records:
            try:
                tx = int(json.loads(json.loads(r["body"]).get("Message", r["body"]))["transaction_id"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a poison message: counted by the scenario that sent it
            p.deliveries[tx] = p.deliveries.get(tx, 0) + 1

    return on_batch


def _train(stack: Any, p: Pipeline) -> str:
    from fraud_common import training

    t0 = time.monotonic()
    outcome = stack.invoke("train_model", {"action": "start"})
    model = outcome["started"]
    print(f"[setup] train start {time.monotonic() - t0:.1f}s")
    wait_for(lambda: training.show_model(p.api, model).state in ("READY", "FAILED"), 240, "CREATE MODEL", 1.0)
    outcome = stack.invoke("train_model", {"action": "check"})
    assert model in outcome["promoted"], outcome
    return model
