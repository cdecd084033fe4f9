"""`python -m local redshift` run as a process, driven by the AWS CLI (`aws redshift-data ...`).

Each AWS CLI call starts a Python interpreter (about a second), so setup and waiting go through
boto3 and the CLI makes the calls under test.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.__main__ import main
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.integration

AWS = str(Path(sys.executable).with_name("aws"))
WORKGROUP = "fraud-wg"
PAGE_BYTES = 2048
TARGET = ("--workgroup-name", WORKGROUP, "--database", "dev")


def start_emulator(port: int, db: Path, *extra: str) -> subprocess.Popen[str]:
    # stderr to a file: a pipe nobody reads could fill up and block the emulator.
    with db.with_suffix(".log").open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "local", "redshift", "--port", str(port), "--db", str(db), *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


class Emulator:
    """One `python -m local redshift` process on a fixed port and database file."""

    def __init__(self, db: Path) -> None:
        self.db, self.port = db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = start_emulator(self.port, self.db, "--page-bytes", str(PAGE_BYTES))
        assert self.process.stdout is not None
        lines = [self.process.stdout.readline() for _ in range(2)]
        assert lines[1] == f"export AWS_ENDPOINT_URL_REDSHIFT_DATA={self.url}\n", self.db.with_suffix(
            ".log"
        ).read_text()

    def stop(self, sig: signal.Signals) -> None:
        """Stop with a signal; it must exit 0 (its stderr is shown when it does not)."""
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        assert code == 0, self.db.with_suffix(".log").read_text()

    def aws(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [AWS, "redshift-data", *args, "--endpoint-url", self.url, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.aws(*args).stdout)

    @property
    def boto(self) -> Any:
        return boto3.client("redshift-data", endpoint_url=self.url)

    def wait(self, statement_id: str) -> str:
        deadline = time.monotonic() + 30
        while (status := self.boto.describe_statement(Id=statement_id)["Status"]) not in (
            "FINISHED",
            "FAILED",
            "ABORTED",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return status

    def setup(self, *sqls: str) -> None:
        statement_id = self.boto.batch_execute_statement(Sqls=list(sqls), WorkgroupName=WORKGROUP)["Id"]
        assert self.wait(statement_id) == "FINISHED"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path_factory.mktemp("cli") / "cli.duckdb")
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop(signal.SIGINT)  # Ctrl-C stops it cleanly


def test_aws_cli_create_insert_select_with_parameters(emulator: Emulator) -> None:
    created = emulator.json(
        "batch-execute-statement",
        *TARGET,
        "--sqls",
        "CREATE TABLE cards (id INT, holder VARCHAR(30))",
        "INSERT INTO cards VALUES (1, 'ann'), (2, 'bob')",
    )
    assert emulator.wait(created["Id"]) == "FINISHED"
    params = json.dumps([{"name": "id", "value": "2"}])
    selected = emulator.json(
        "execute-statement",
        *TARGET,
        "--sql",
        "SELECT id, holder FROM cards WHERE id = :id",
        "--parameters",
        params,
    )
    assert emulator.wait(selected["Id"]) == "FINISHED"
    result = emulator.json("get-statement-result", "--id", selected["Id"])
    assert result["Records"] == [[{"longValue": 2}, {"stringValue": "bob"}]]
    assert [c["typeName"] for c in result["ColumnMetadata"]] == ["int4", "varchar"]


def test_aws_cli_pages_through_a_large_result(emulator: Emulator) -> None:
    emulator.setup(
        "CREATE TABLE many (n INT)", "INSERT INTO many VALUES " + ",".join(f"({i})" for i in range(500))
    )
    statement_id = emulator.boto.execute_statement(
        Sql="SELECT n FROM many ORDER BY n", WorkgroupName=WORKGROUP
    )["Id"]
    emulator.wait(statement_id)
    first = emulator.boto.get_statement_result(Id=statement_id)
    assert "NextToken" in first and 0 < len(first["Records"]) < 500  # one page is smaller than the result
    result = emulator.json("get-statement-result", "--id", statement_id)  # the CLI follows NextToken
    assert [r[0]["longValue"] for r in result["Records"]] == list(range(500))


def test_aws_cli_failing_statement_and_batch_failing_half_way(emulator: Emulator) -> None:
    emulator.setup("CREATE TABLE outbox (id INT)")
    failed = emulator.json("execute-statement", *TARGET, "--sql", "SELECT * FROM table_that_is_not_there")
    emulator.wait(failed["Id"])
    desc = emulator.json("describe-statement", "--id", failed["Id"])
    assert (
        desc["Status"] == "FAILED"
        and desc["Error"].startswith("ERROR:")
        and "table_that_is_not_there" in desc["Error"]
    )
    batch = emulator.json(
        "batch-execute-statement",
        *TARGET,
        "--sqls",
        "INSERT INTO outbox VALUES (1)",
        "INSERT INTO outbox VALUES ('not a number')",
    )
    assert emulator.wait(batch["Id"]) == "FAILED"
    count = emulator.boto.execute_statement(Sql="SELECT COUNT(*) FROM outbox", WorkgroupName=WORKGROUP)["Id"]
    emulator.wait(count)
    assert emulator.boto.get_statement_result(Id=count)["Records"] == [[{"longValue": 0}]]  # nothing applied


def test_aws_cli_cancel_and_list(emulator: Emulator) -> None:
    emulator.setup(
        "CREATE TABLE hundred (x INT)", "INSERT INTO hundred VALUES " + ",".join(f"({i})" for i in range(100))
    )
    endless = "SELECT COUNT(*) FROM hundred a, hundred b, hundred c, hundred d, hundred e, hundred f"
    out = emulator.json("execute-statement", *TARGET, "--sql", endless, "--statement-name", "endless")
    assert emulator.json("cancel-statement", "--id", out["Id"])["Status"] is True
    assert emulator.wait(out["Id"]) == "ABORTED"
    listed = emulator.json("list-statements", "--statement-name", "endless")["Statements"]
    assert [(s["Id"], s["Status"]) for s in listed] == [(out["Id"], "ABORTED")]


def test_aws_cli_errors(emulator: Emulator) -> None:
    missing = emulator.aws("describe-statement", "--id", "0f0e0d0c-0000-4000-8000-000000000002", check=False)
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    invalid = emulator.aws("execute-statement", "--sql", "SELECT 1", check=False)
    assert invalid.returncode != 0 and "ValidationException" in invalid.stderr


def test_sigterm_then_restart_on_the_same_file_keeps_the_tables(emulator: Emulator) -> None:
    emulator.setup("CREATE TABLE survivor (id INT)", "INSERT INTO survivor VALUES (42)")
    emulator.stop(signal.SIGTERM)
    emulator.start()
    statement_id = emulator.boto.execute_statement(Sql="SELECT id FROM survivor", WorkgroupName=WORKGROUP)[
        "Id"
    ]
    assert emulator.wait(statement_id) == "FINISHED"
    assert emulator.json("get-statement-result", "--id", statement_id)["Records"] == [[{"longValue": 42}]]


def test_port_taken_gives_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["redshift", "--port", str(port), "--db", str(tmp_path / "x.duckdb")])
    out, err = capsys.readouterr()
    assert code != 0
    assert err.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: port already in use"]
    assert "export" not in out


def test_missing_db_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["redshift", "--port", str(free_port()), "--db", str(tmp_path / "no" / "such" / "dir.duckdb")]
    )
    assert code != 0
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: directory {tmp_path / 'no' / 'such'} does not exist"
    ]
