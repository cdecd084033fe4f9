"""apply_sql: apply the migrations as a CloudFormation custom resource, or on direct invoke.

Create/Update apply pending migrations; a failure answers FAILED with the file name and Redshift's
error, which fails the stack operation (and rolls it back). Delete keeps the warehouse's data unless
the resource property `DropOnDelete` (the stack's DropWarehouseObjectsOnDelete) is "true", in which case
`sql/teardown.sql` runs: it drops every object the migrations create except model versions.
A direct invoke (no RequestType) applies the migrations and raises on failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from fraud_common import migrations
from fraud_common.custom_resource import respond
from fraud_common.dataapi import DataApi
from fraud_common.sqlfiles import fill, split_statements, sql_dir

logger = Logger(child=True)


def physical_id(api: DataApi) -> str:
    target = api.target()
    where = target.get("WorkgroupName") or target.get("ClusterIdentifier")
    return f"sql-migrations:{where}/{target['Database']}"


def apply_migrations(api: DataApi, placeholders: Mapping[str, str]) -> dict[str, Any]:
    report = migrations.apply(api, placeholders)
    logger.info("migrations applied", extra={"applied": report.applied, "skipped": len(report.skipped)})
    return {
        "Applied": len(report.applied),
        "Skipped": len(report.skipped),
        "LastApplied": (report.applied or [""])[-1],
    }


def teardown(api: DataApi, placeholders: Mapping[str, str]) -> int:
    path = sql_dir() / "teardown.sql"
    if not path.is_file():
        logger.warning("DropOnDelete is set but there is no sql/teardown.sql; nothing dropped")
        return 0
    statements = split_statements(fill(path.read_text(encoding="utf-8"), placeholders, "teardown.sql"))
    for statement in statements:
        api.execute(statement, name="teardown")
    return len(statements)


def handle(event: dict[str, Any], api: DataApi, placeholders: Mapping[str, str]) -> dict[str, Any]:
    request_type = event.get("RequestType")
    if request_type is None:  # direct invoke: errors propagate to the caller
        return apply_migrations(api, placeholders)
    pid = physical_id(api)
    try:
        if request_type in ("Create", "Update"):
            return respond(event, "SUCCESS", "migrations applied", pid, apply_migrations(api, placeholders))
        if request_type == "Delete":
            drop = str((event.get("ResourceProperties") or {}).get("DropOnDelete", "false")).lower() == "true"
            dropped = teardown(api, placeholders) if drop else 0
            return respond(event, "SUCCESS", f"data kept (dropped {dropped} statements)", pid)
        return respond(event, "FAILED", f"unknown RequestType {request_type!r}", pid)
    except migrations.MigrationError as exc:
        logger.error("migration failed", extra={"file": exc.file, "error": exc.detail})
        return respond(event, "FAILED", f"{exc.file}: {exc.detail}", pid)
    except Exception as exc:  # CloudFormation must get an answer whatever failed
        logger.exception("apply_sql failed")
        return respond(event, "FAILED", f"{type(exc).__name__}: {exc}", pid)
