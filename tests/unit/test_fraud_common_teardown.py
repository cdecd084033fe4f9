"""sql/teardown.sql against sql/migrations: it drops every object the migrations create, with the right
DROP form, IF EXISTS, and every object before the objects it is built on (the local engine does not
track view dependencies, so the order is checked here, on the SQL text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fraud_common.migrations import LEDGER_DDL
from fraud_common.sqlfiles import split_statements

pytestmark = pytest.mark.unit

SQL = Path(__file__).resolve().parents[2] / "sql"
CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|VIEW|MATERIALIZED\s+VIEW|EXTERNAL\s+SCHEMA)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
    re.I,
)
DROP = re.compile(r"^DROP\s+(TABLE|VIEW|MATERIALIZED\s+VIEW|SCHEMA)\s+IF\s+EXISTS\s+(\w+)$", re.I)
# The DROP form each CREATE needs (an external schema is dropped by DROP SCHEMA).
DROP_KIND = {
    "TABLE": "TABLE",
    "VIEW": "VIEW",
    "MATERIALIZED VIEW": "MATERIALIZED VIEW",
    "EXTERNAL SCHEMA": "SCHEMA",
}


def without_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def created() -> dict[str, tuple[str, str]]:
    """Every object the migrations (and the ledger) create: name -> (DROP kind, defining SQL)."""
    objects = {}
    for path in sorted((SQL / "migrations").glob("*.sql")):
        for statement in split_statements(path.read_text()):
            match = CREATE.match(without_comments(statement))
            if match:
                kind = " ".join(match.group(1).upper().split())
                objects[match.group(2).lower()] = (DROP_KIND[kind], without_comments(statement))
    objects["schema_migrations"] = ("TABLE", LEDGER_DDL)
    return objects


def drops() -> list[tuple[str, str]]:
    """teardown.sql's statements as (kind, name), in order; anything but DROP ... IF EXISTS fails."""
    result = []
    for statement in split_statements((SQL / "teardown.sql").read_text()):
        text = " ".join(without_comments(statement).split()).rstrip(";")
        match = DROP.match(text)
        assert match, f"not a DROP ... IF EXISTS: {text!r}"
        result.append((" ".join(match.group(1).upper().split()), match.group(2).lower()))
    return result


def test_teardown_drops_every_migration_object_with_its_own_drop_form() -> None:
    objects = created()
    dropped = drops()
    assert len(objects) > 20  # the parser found the migrations' objects
    assert sorted(name for _, name in dropped) == sorted(objects)
    for kind, name in dropped:
        assert kind == objects[name][0], f"{name} is a {objects[name][0]}, dropped as a {kind}"


def test_teardown_drops_dependants_before_what_they_read() -> None:
    objects = created()
    order = {name: position for position, (_, name) in enumerate(drops())}
    checked = 0
    for name, (_, definition) in objects.items():
        body = CREATE.sub("", definition, count=1)  # what it reads, without its own name
        for other in objects:
            if other != name and re.search(rf"\b{other}\b", body, re.I):
                assert order[name] < order[other], f"{name} reads {other} but is dropped after it"
                checked += 1
    assert checked > 20  # views over tables, MVs over external schemas
    assert order["schema_migrations"] == len(order) - 1  # the ledger goes last


def test_teardown_names_no_model() -> None:
    # Model versions have generated names (training.version_names); static SQL cannot name them.
    assert not re.search(r"^\s*DROP\s+MODEL", (SQL / "teardown.sql").read_text(), re.I | re.M)
