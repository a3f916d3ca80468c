"""Migrations: in order, once, under a lock when collectors start together; a mismatched schema is refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from footfall.collector.errors import MigrationError
from footfall.collector.migrate import check_schema, load_migrations, migrate

from tests.fixtures.pg import sql_rows, sql_value


def test_the_shipped_migrations_are_numbered_in_order_without_duplicates() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions)) and versions[:3] == [1, 2, 3]


async def test_migrate_applies_everything_once_and_is_idempotent(pg_empty_dsn: str) -> None:
    with pytest.raises(MigrationError, match="run `footfall collector migrate`"):
        await check_schema(pg_empty_dsn)
    applied = await migrate(pg_empty_dsn)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert await migrate(pg_empty_dsn) == []
    await check_schema(pg_empty_dsn)
    tables = {name for (name,) in sql_rows(pg_empty_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"organizations", "sites", "agents", "enrollment_tokens", "api_keys", "sensors", "counts_day"} <= tables
    partitioned = sql_rows(
        pg_empty_dsn, "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1"
    )
    assert [name for (name,) in partitioned] == [
        "counts_15m", "occupancy", "people_counts", "sales_15m", "sensor_events", "transactions",
    ]


async def test_collectors_migrating_at_once_apply_each_migration_once(pg_empty_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(pg_empty_dsn) for _ in range(5)))
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in load_migrations()]
    assert sql_value(pg_empty_dsn, "SELECT count(*) FROM schema_migrations") == len(load_migrations())


async def test_a_database_migrated_by_a_newer_collector_is_refused(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')")
    with pytest.raises(MigrationError, match=r"\[9999\].*upgrade this collector"):
        await migrate(pg_dsn)
    with pytest.raises(MigrationError, match="newer footfall"):
        await check_schema(pg_dsn)


async def test_an_edited_migration_is_refused(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
    with pytest.raises(MigrationError, match=r"0002_raw_records.*never be edited"):
        await migrate(pg_dsn)


async def test_a_failing_migration_leaves_nothing_half_applied(pg_empty_dsn: str) -> None:
    # A table in the way of migration 0001 makes it fail midway; its transaction rolls everything back.
    with psycopg.connect(pg_empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE api_keys (squatter int)")
    with pytest.raises(psycopg.errors.DuplicateTable):
        await migrate(pg_empty_dsn)
    assert sql_value(pg_empty_dsn, "SELECT to_regclass('organizations')") is None
    assert sql_value(pg_empty_dsn, "SELECT count(*) FROM schema_migrations") == 0
