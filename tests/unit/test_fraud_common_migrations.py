"""fraud_common.migrations file discovery and the custom resource's answers (no warehouse needed)."""

from __future__ import annotations

import pytest
from fraud_common.custom_resource import MAX_REASON, respond
from fraud_common.migrations import MigrationError, discover

pytestmark = pytest.mark.unit


def test_discover_orders_by_number_not_by_text(tmp_path) -> None:
    for name in ("10_later.sql", "002_second.sql", "1_first.sql"):
        (tmp_path / name).write_text("SELECT 1;\n")
    assert [m.name for m in discover(tmp_path)] == ["1_first.sql", "002_second.sql", "10_later.sql"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["001_a.sql", "1_b.sql"], "version 1 already used by"),
        (["001_a.sql", "notes.sql"], "must look like NNN_name.sql"),
        (["001_a b.sql"], "must look like NNN_name.sql"),
    ],
)
def test_discover_rejects_ambiguous_or_stray_files(tmp_path, names, message) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path)


def test_checksum_ignores_line_endings_only(tmp_path) -> None:
    (tmp_path / "001_a.sql").write_bytes(b"SELECT 1;\r\n")
    (tmp_path / "002_b.sql").write_bytes(b"SELECT 1;\n")
    (tmp_path / "003_c.sql").write_bytes(b"SELECT 2;\n")
    a, b, c = discover(tmp_path)
    assert a.checksum == b.checksum != c.checksum


def test_custom_resource_answer_without_url_is_returned_and_reason_is_bounded() -> None:
    event = {"StackId": "s", "RequestId": "r", "LogicalResourceId": "ApplySql"}
    body = respond(event, "FAILED", "x" * 10_000, "pid", {"Applied": 0})
    assert body["Status"] == "FAILED" and len(body["Reason"]) == MAX_REASON
    assert (body["PhysicalResourceId"], body["LogicalResourceId"], body["Data"]) == (
        "pid",
        "ApplySql",
        {"Applied": 0},
    )
    assert respond(event, "SUCCESS")["PhysicalResourceId"] == "ApplySql"
