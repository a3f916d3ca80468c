"""Partition maintenance beyond creation (collector/store.py makes them ahead): listing, and retention of raw rows.

Retention (`raw_retention` in collector.toml, off by default) drops the monthly partitions of the
*raw* tables (people_counts, occupancy, transactions, sensor_events) whose whole month ended
more than the retention ago. The rollups are kept whatever their age, so every metric of every
period still answers; what goes is the audit trail of single readings (and the exact window of a
buffer gap reported after its neighbours were dropped, which then opens at the agent's enrollment).
A batch that later brings records for a dropped month recreates its partition; the next pass
drops it again. With TimescaleDB, `drop_chunks` does the same on the hypertables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from footfall.logs import event

from .store import PARTITION_LOCK, PARTITIONED_TABLES, Store

log = logging.getLogger("footfall.collector.partitions")

RAW_TABLES = ("people_counts", "occupancy", "transactions", "sensor_events")
Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Partition:
    """One monthly partition (or TimescaleDB chunk) of a time table."""

    table: str
    name: str
    start: datetime
    end: datetime
    kind: str  # raw or rollup
    rows: int  # the planner's estimate
    bytes: int


async def _timescale(conn: Conn) -> bool:
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
    row = await cur.fetchone()
    return bool(row and row[0])


async def list_partitions(conn: Conn) -> list[Partition]:
    """Every partition of the time tables, by table and month."""
    if await _timescale(conn):
        cur = await conn.execute(
            "SELECT c.hypertable_name, c.chunk_schema || '.' || c.chunk_name, c.range_start, c.range_end, "
            "greatest(k.reltuples, 0)::bigint, pg_total_relation_size(format('%%I.%%I', c.chunk_schema, c.chunk_name)) "
            "FROM timescaledb_information.chunks c "
            "JOIN pg_class k ON k.relname = c.chunk_name "
            "WHERE c.hypertable_name = ANY(%s) ORDER BY 1, 3",
            (list(PARTITIONED_TABLES),),
        )
    else:
        cur = await conn.execute(
            "SELECT parent.relname, child.relname, "
            "(regexp_match(pg_get_expr(child.relpartbound, child.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz, "
            "(regexp_match(pg_get_expr(child.relpartbound, child.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz, "
            "greatest(child.reltuples, 0)::bigint, pg_total_relation_size(child.oid) "
            "FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent "
            "JOIN pg_class child ON child.oid = i.inhrelid "
            "WHERE parent.relname = ANY(%s) AND pg_table_is_visible(parent.oid) ORDER BY 1, 3",
            (list(PARTITIONED_TABLES),),
        )
    return [
        Partition(table, name, start, end, "raw" if table in RAW_TABLES else "rollup", int(rows), int(size))
        for table, name, start, end, rows, size in await cur.fetchall()
    ]


def cutoff(now: datetime, retention: timedelta) -> datetime:
    """Raw rows of months that ended before this instant may go."""
    return now.astimezone(UTC) - retention


async def drop_expired(conn: Conn, store: Store, retention: timedelta, now: datetime | None = None) -> list[str]:
    """Drop the raw partitions (or chunks) wholly older than `retention`; their names."""
    before = cutoff(now or datetime.now(UTC), retention)
    if await _timescale(conn):
        dropped: list[str] = []
        for table in RAW_TABLES:
            cur = await conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)", (table, before))
            dropped += [str(name) for (name,) in await cur.fetchall()]
        _log(dropped)
        return dropped
    expired = [p for p in await list_partitions(conn) if p.kind == "raw" and p.end <= before]
    # Dropping locks each parent exclusively: in the one order every writer takes them (store.py).
    expired.sort(key=lambda p: (PARTITIONED_TABLES.index(p.table), p.start))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for partition in expired:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition.name)))
    store.forget({(p.table, date(p.start.astimezone(UTC).year, p.start.astimezone(UTC).month, 1)) for p in expired})
    names = [p.name for p in expired]
    _log(names)
    return names


def _log(names: list[str]) -> None:
    for name in names:
        event(log, "partition_dropped", partition=name, reason="raw_retention")

