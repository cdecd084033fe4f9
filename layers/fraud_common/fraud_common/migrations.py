"""Ordered, idempotent SQL migrations with a checksum ledger.

Files `sql/migrations/NNN_name.sql` are applied in number order, statement by statement (each waits
for FINISHED; Redshift cannot run some of them, e.g. external schemas and streaming MVs, inside a
transaction block). A file is recorded in `schema_migrations` after all its statements succeed, so a
failed file is retried whole on the next run; the SQL itself is written to be re-runnable
(IF NOT EXISTS). The checksum covers the file as written (before placeholders): editing an applied
file is an error, not a silent re-run; changing a setting is not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fraud_common.dataapi import DataApi, DataApiError
from fraud_common.sqlfiles import fill, split_statements, sql_dir

FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")

LEDGER_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer NOT NULL,
    name varchar(256) NOT NULL,
    checksum char(64) NOT NULL,
    applied_at timestamp NOT NULL DEFAULT getdate()
)"""
LEDGER_READ = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
LEDGER_INSERT = "INSERT INTO schema_migrations (version, name, checksum) VALUES (:version, :name, :checksum)"


class MigrationError(Exception):
    """A migration could not be applied. `file` names the SQL file, `detail` Redshift's error."""

    def __init__(self, file: str, detail: str, statement: str = "") -> None:
        super().__init__(f"{file}: {detail}")
        self.file = file
        self.detail = detail
        self.statement = statement


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.replace("\r\n", "\n").encode()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    statements: int = 0


def discover(directory: Path | None = None) -> list[Migration]:
    """The migration files in version order; stray files and duplicate versions are errors."""
    directory = directory or sql_dir() / "migrations"
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(path.name, "file name must look like NNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(
                path.name, f"version {version} already used by {migrations[version].path.name}"
            )
        migrations[version] = Migration(version, path.name, path, path.read_text(encoding="utf-8"))
    return [migrations[v] for v in sorted(migrations)]


def apply(api: DataApi, placeholders: Mapping[str, str], directory: Path | None = None) -> MigrationReport:
    """Apply every migration not yet in the ledger; verify the checksums of those that are."""
    migrations = discover(directory)
    # Template every file before running anything: a bad placeholder must not leave a half-applied run.
    prepared = [(m, split_statements(fill(m.text, placeholders, m.name))) for m in migrations]
    try:
        api.execute(LEDGER_DDL)
        applied = {int(r["version"]): r for r in api.query(LEDGER_READ)}
    except DataApiError as exc:
        raise MigrationError("schema_migrations", str(exc)) from exc

    report = MigrationReport()
    for migration, statements in prepared:
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded["checksum"].strip() != migration.checksum:
                raise MigrationError(
                    migration.name,
                    f"changed after it was applied (ledger checksum {recorded['checksum'].strip()[:12]}..., "
                    f"file {migration.checksum[:12]}...); add a new migration instead of editing this one",
                )
            report.skipped.append(migration.name)
            continue
        for statement in statements:
            try:
                api.execute(statement, name=f"migration {migration.name}")
            except DataApiError as exc:
                detail = getattr(exc, "message", str(exc))
                raise MigrationError(migration.name, detail, statement) from exc
            report.statements += 1
        api.execute(
            LEDGER_INSERT,
            {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
        )
        report.applied.append(migration.name)
    return report
