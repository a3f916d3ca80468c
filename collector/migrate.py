"""Numbered SQL migrations (`migrations/NNNN_name.sql`), applied in order, each in its own transaction.

`schema_migrations` records each applied version with the SHA-256 of its file. Everything runs
under a PostgreSQL advisory lock, so several collectors starting at once apply each migration
exactly once: the others wait, then find nothing left to do. A database that has a migration
this code does not know (a newer collector migrated it), or whose applied file has changed
since, is refused with a message saying so, rather than run against a schema it does not match.

`footfall collector migrate` runs it, and `serve` runs it before it accepts requests.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from footfall.logs import event

from .errors import MigrationError

log = logging.getLogger("footfall.collector.migrate")

# pg_advisory_lock key for migrations: "ff-migr" in ASCII, so it is recognisable in pg_locks.
MIGRATION_LOCK = 0x66662D6D696772
_NAME = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text: an applied migration must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The shipped migrations in version order; numbers are unique and may leave holes.

    Holes are allowed because parts of the collector are developed in parallel, each with its own
    range of numbers (0004-0009, 0010-0014, ...); a migration is applied once whatever its number.
    """
    found: list[Migration] = []
    for entry in resources.files("footfall.collector").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for before, migration in itertools.pairwise(found):
        if migration.version == before.version:
            raise MigrationError(f"migrations {before.name} and {migration.name} share the number {before.version:04d}")
    return found


async def migrate(dsn: str) -> list[Migration]:
    """Bring the database at `dsn` to the latest schema; returns the migrations this call applied."""
    migrations = load_migrations()
    applied_now: list[Migration] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await conn.execute(_TABLE)
            applied = await _applied(conn)
            _check_compatible(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
                event(log, "migration_applied", version=migration.version, migration=migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


async def check_schema(dsn: str) -> None:
    """Raise MigrationError unless the database at `dsn` has exactly this code's migrations applied."""
    migrations = load_migrations()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        exists = await (await conn.execute("SELECT to_regclass('schema_migrations')")).fetchone()
        applied = await _applied(conn) if exists and exists[0] else {}
    _check_compatible(migrations, applied)
    pending = [m for m in migrations if m.version not in applied]
    if pending:
        raise MigrationError(
            f"the database schema is at version {max(applied, default=0)} and this collector needs "
            f"{migrations[-1].version}: run `footfall collector migrate` first"
        )


async def _applied(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    rows = await (await conn.execute("SELECT version, checksum FROM schema_migrations")).fetchall()
    return {int(version): str(checksum) for version, checksum in rows}


def _check_compatible(migrations: list[Migration], applied: dict[int, str]) -> None:
    known = {m.version: m for m in migrations}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        raise MigrationError(
            f"the database has migrations {newer} that this collector does not know: "
            "it was migrated by a newer footfall; upgrade this collector"
        )
    changed = [f"{v:04d}_{known[v].name}" for v, checksum in applied.items() if known[v].checksum != checksum]
    if changed:
        raise MigrationError(
            f"migrations {changed} differ from the versions applied to this database; "
            "an applied migration must never be edited: add a new one instead"
        )
