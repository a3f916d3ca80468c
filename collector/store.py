"""Writing a batch into PostgreSQL: monthly partitions, raw rows by binary COPY, rollups by upsert.

`Store.write` runs inside ingest's batch transaction (collector/ingest.py), so raw rows, rollups
and the agent's high-water mark commit together or not at all. What it relies on:

- Partitions. The raw tables and the 15-minute rollups are partitioned by month (UTC) of the
  record time. `ensure_ahead` creates this month and the next two at start and hourly;
  `ensure_for` creates, before the batch transaction, any month a batch touches (a backlog
  from last spring; the protocol lets one batch span at most `envelope.MAX_MONTHS` months).
  Creating a partition locks its parent table exclusively, so it happens in its own short
  transaction per month, never in the batch's, under an advisory lock so that collectors
  starting together do not race on the catalog, with `CREATE TABLE IF NOT EXISTS`. Known
  partitions are cached in the process. With TimescaleDB the tables are hypertables that make
  their own chunks, and none of this runs.
- Lock order. Every transaction here takes the partitioned parents in one order,
  `PARTITIONED_TABLES` (raw tables, then rollups): partition creation as it creates, and the
  batch transaction by locking them all `ROW EXCLUSIVE` first thing (a batch writes raw rows,
  then rollups, and its outage bookkeeping reads raw tables again: without the upfront lock its
  order would depend on the batch's content). Two orders on the same tables deadlock; one cannot.
- COPY. Raw rows go in by binary COPY, one per table a batch touches: one round trip like a
  multi-row INSERT, and the fastest path for the backlog batches of thousands of records.
- Rollups. Per-batch sums come from collector/rollups.py and are upserted in one pipelined
  round trip, `entries = t.entries + excluded.entries`, rows in key order so that concurrent
  transactions take row locks in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from footfall.protocol.records import Count, Occupancy, Record, SensorEvent, Transaction
from psycopg import sql

from footfall.logs import event

from . import balance, cache, outages, rollups
from .rollups import from_ms, record_time

log = logging.getLogger("footfall.collector.store")

# pg_advisory_xact_lock key for creating partitions: "ff-part" in ASCII.
PARTITION_LOCK = 0x66662D70617274
MONTHS_AHEAD = 2
# The partitioned tables each record type writes to (migrations 0002, 0003 and 0006 create them).
TABLES_BY_TYPE: dict[type[Any], tuple[str, ...]] = {
    Count: ("people_counts", "counts_15m"),
    Occupancy: ("occupancy", "occupancy_15m"),
    Transaction: ("transactions", "sales_15m"),
    SensorEvent: ("sensor_events",),
}
# Every partitioned table, in the one order transactions lock them (see the module docstring):
# the raw tables in the order `write` copies into them, then the rollups in the order it upserts.
PARTITIONED_TABLES: tuple[str, ...] = (
    "people_counts", "occupancy", "transactions", "sensor_events", "counts_15m", "sales_15m", "occupancy_15m",
)

_COMMON = ("org_id", "site_id", "agent_id", "seq")
_COMMON_TYPES = ("text", "text", "text", "int8")
# table -> (columns after the common ones, their binary COPY types)
_RAW: dict[type[Any], tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    Count: (
        "people_counts",
        ("sensor", "line", "period_start", "period_end", "entries", "exits", "clock"),
        ("text", "text", "timestamptz", "timestamptz", "int8", "int8", "text"),
    ),
    Occupancy: (
        "occupancy",
        ("sensor", "zone", "at", "value", "clock"),
        ("text", "text", "timestamptz", "int8", "text"),
    ),
    Transaction: (
        "transactions",
        ("terminal", "txn_id", "at", "kind", "amount_minor", "currency", "items", "raw", "clock"),
        ("text", "text", "timestamptz", "text", "int8", "text", "int8", "text", "text"),
    ),
    SensorEvent: (
        "sensor_events",
        ("sensor", "at", "kind", "detail", "lost_first", "lost_last", "clock"),
        ("text", "timestamptz", "text", "text", "int8", "int8", "text"),
    ),
}

_UPSERT_COUNTS_15M = """
INSERT INTO counts_15m AS t (org_id, site_id, agent_id, bucket_start, sensor, line, entries, exits)
SELECT %s, %s, %s, u.* FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::int8[], %s::int8[]) AS u
ON CONFLICT (org_id, site_id, bucket_start, agent_id, sensor, line)
DO UPDATE SET entries = t.entries + excluded.entries, exits = t.exits + excluded.exits
"""
_UPSERT_COUNTS_DAY = """
INSERT INTO counts_day AS t (org_id, site_id, agent_id, local_day, sensor, line, entries, exits)
SELECT %s, %s, %s, u.* FROM unnest(%s::date[], %s::text[], %s::text[], %s::int8[], %s::int8[]) AS u
ON CONFLICT (org_id, site_id, local_day, agent_id, sensor, line)
DO UPDATE SET entries = t.entries + excluded.entries, exits = t.exits + excluded.exits
"""
_SALES_SET = """
DO UPDATE SET sales_count = t.sales_count + excluded.sales_count,
    sales_amount = t.sales_amount + excluded.sales_amount,
    refunds_count = t.refunds_count + excluded.refunds_count,
    refunds_amount = t.refunds_amount + excluded.refunds_amount,
    voids_count = t.voids_count + excluded.voids_count,
    voids_amount = t.voids_amount + excluded.voids_amount,
    items = t.items + excluded.items
"""
_SALES_COLUMNS = "sales_count, sales_amount, refunds_count, refunds_amount, voids_count, voids_amount, items"
_SALES_ARRAYS = ", ".join(["%s::int8[]"] * 7)
_UPSERT_SALES_15M = f"""
INSERT INTO sales_15m AS t (org_id, site_id, agent_id, bucket_start, terminal, currency, {_SALES_COLUMNS})
SELECT %s, %s, %s, u.* FROM unnest(%s::timestamptz[], %s::text[], %s::text[], {_SALES_ARRAYS}) AS u
ON CONFLICT (org_id, site_id, bucket_start, agent_id, terminal, currency)
{_SALES_SET}"""
_UPSERT_SALES_DAY = f"""
INSERT INTO sales_day AS t (org_id, site_id, agent_id, local_day, terminal, currency, {_SALES_COLUMNS})
SELECT %s, %s, %s, u.* FROM unnest(%s::date[], %s::text[], %s::text[], {_SALES_ARRAYS}) AS u
ON CONFLICT (org_id, site_id, local_day, agent_id, terminal, currency)
{_SALES_SET}"""
_UPSERT_SENSORS = """
INSERT INTO sensors AS s (org_id, site_id, agent_id, kind, name, first_seen_at, last_seen_at)
SELECT %s, %s, %s, u.* FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS u
ON CONFLICT (agent_id, kind, name)
DO UPDATE SET first_seen_at = LEAST(s.first_seen_at, excluded.first_seen_at),
    last_seen_at = GREATEST(s.last_seen_at, excluded.last_seen_at),
    org_id = excluded.org_id, site_id = excluded.site_id
"""

# Completeness and occupancy rollups (migrations 0005 and 0006), same rules as above.
_UPSERT_COVERAGE = """
INSERT INTO sensor_coverage_day AS t (org_id, site_id, local_day, sensor, mask, quarters, spread)
SELECT %s, %s, u.* FROM unnest(%s::date[], %s::text[], %s::bit(128)[], %s::int4[], %s::bit(128)[]) AS u
ON CONFLICT (org_id, site_id, local_day, sensor)
DO UPDATE SET mask = t.mask | excluded.mask, quarters = bit_count(t.mask | excluded.mask),
    spread = t.spread | excluded.spread
"""
_UPSERT_SITE_SENSORS = """
INSERT INTO site_sensors AS s (org_id, site_id, sensor, counts, occupancy, reporting_since, last_report_at)
SELECT %s, %s, u.* FROM unnest(%s::text[], %s::bool[], %s::bool[], %s::timestamptz[], %s::timestamptz[]) AS u
ON CONFLICT (org_id, site_id, sensor)
DO UPDATE SET counts = s.counts OR excluded.counts, occupancy = s.occupancy OR excluded.occupancy,
    reporting_since = LEAST(s.reporting_since, excluded.reporting_since),
    last_report_at = GREATEST(s.last_report_at, excluded.last_report_at)
"""
_UPSERT_OCCUPANCY_15M = """
INSERT INTO occupancy_15m AS t (org_id, site_id, agent_id, bucket_start, sensor, zone, peak)
SELECT %s, %s, %s, u.* FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::int8[]) AS u
ON CONFLICT (org_id, site_id, bucket_start, agent_id, sensor, zone) DO UPDATE SET peak = GREATEST(t.peak, excluded.peak)
"""
_UPSERT_OCCUPANCY_DAY = """
INSERT INTO occupancy_day AS t (org_id, site_id, agent_id, local_day, sensor, zone, peak)
SELECT %s, %s, %s, u.* FROM unnest(%s::date[], %s::text[], %s::text[], %s::int8[]) AS u
ON CONFLICT (org_id, site_id, local_day, agent_id, sensor, zone) DO UPDATE SET peak = GREATEST(t.peak, excluded.peak)
"""
_MARK_BALANCE = """
INSERT INTO balance_day AS b (org_id, site_id, local_day, version)
SELECT %s, %s, d, 1 FROM unnest(%s::date[]) AS d
ON CONFLICT (org_id, site_id, local_day) DO UPDATE SET version = b.version + 1
"""
_NOTIFY = "SELECT pg_notify(%s, %s)"

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class AgentContext:
    """Who a batch belongs to, as read from the agent's row in the batch transaction."""

    agent_id: str
    org_id: str
    site_id: str
    zone: ZoneInfo
    # The site's daily reset of the estimated occupancy (sites.day_reset).
    day_reset: time = time(4)


def month_of(moment: datetime) -> date:
    """The first day of the UTC month holding `moment`."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after `month`."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    """`people_counts_2026_03`."""
    return f"{table}_{month.year:04d}_{month.month:02d}"


class Store:
    """Writes batches; holds the in-process cache of partitions known to exist."""

    def __init__(self) -> None:
        self._known: set[tuple[str, date]] = set()
        self._native: frozenset[str] | None = None

    async def ensure_ahead(self, conn: Conn, now: datetime, months: int = MONTHS_AHEAD) -> None:
        """Create this month's partitions and the next `months` months' (run at start and hourly)."""
        first = month_of(now)
        await self._ensure(conn, {(t, add_months(first, i)) for t in PARTITIONED_TABLES for i in range(months + 1)})

    async def ensure_for(self, conn: Conn, records: Iterable[Record]) -> None:
        """Create the partitions `records` will land in; call outside the batch transaction."""
        wanted: set[tuple[str, date]] = set()
        for record in records:
            month = month_of(record_time(record))
            wanted.update((table, month) for table in TABLES_BY_TYPE[type(record)])
        await self._ensure(conn, wanted)

    async def write(self, conn: Conn, ctx: AgentContext, records: Sequence[Record]) -> None:
        """Insert new `records` (above the agent's high-water mark) and their rollups, in the caller's transaction."""
        native = await self._native_tables(conn)
        if native:
            # The lock order of the module docstring, whatever this batch holds.
            # `ONLY` before each name: the parents alone, not their hundreds of partitions.
            await conn.execute(
                sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(sql.SQL("ONLY {}").format(sql.Identifier(t)) for t in PARTITIONED_TABLES
                                       if t in native)
                )
            )
        by_type: dict[type[Any], list[Record]] = {cls: [] for cls in _RAW}
        for record in records:
            by_type[type(record)].append(record)
        for cls, group in by_type.items():
            if not group:
                continue
            table, columns, types = _RAW[cls]
            await _copy(conn, table, (*_COMMON, *columns), (*_COMMON_TYPES, *types), (_row(ctx, r) for r in group))
        sums = rollups.compute(records, ctx.zone)
        owner = (ctx.org_id, ctx.site_id, ctx.agent_id)
        statements: list[tuple[str, Sequence[Any]]] = []
        tables: list[tuple[str, dict[Any, Any], Any]] = [
            (_UPSERT_COUNTS_15M, sums.counts_15m, _counts),
            (_UPSERT_COUNTS_DAY, sums.counts_day, _counts),
            (_UPSERT_SALES_15M, sums.sales_15m, rollups.SalesTotals.values),
            (_UPSERT_SALES_DAY, sums.sales_day, rollups.SalesTotals.values),
            (_UPSERT_SENSORS, sums.sensors, tuple),
        ]
        tables += [
            (_UPSERT_OCCUPANCY_15M, sums.occupancy_15m, _one),
            (_UPSERT_OCCUPANCY_DAY, sums.occupancy_day, _one),
        ]
        for statement, rows, values in tables:
            if rows:
                # Key order: concurrent transactions lock rows in the same order and cannot deadlock.
                statements.append((statement, (*owner, *_columns(k + values(rows[k]) for k in sorted(rows)))))
        statements += _completeness_statements(ctx, sums)
        # One round trip for every upsert instead of one each.
        async with conn.pipeline(), conn.cursor() as cur:
            for statement, params in statements:
                await cur.execute(statement.encode(), params)

    def forget(self, partitions: set[tuple[str, date]]) -> None:
        """Partitions dropped (by retention): make them again if a batch needs them."""
        self._known -= partitions

    def forget_all(self) -> None:
        """Check every partition again (one was dropped behind this process's back)."""
        self._known.clear()

    async def _native_tables(self, conn: Conn) -> frozenset[str]:
        """The tables partitioned natively (not TimescaleDB hypertables): those need partitions made."""
        if self._native is None:
            cur = await conn.execute(
                "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                "WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid)",
                (list(PARTITIONED_TABLES),),
            )
            self._native = frozenset(str(name) for (name,) in await cur.fetchall())
        return self._native

    async def _ensure(self, conn: Conn, wanted: set[tuple[str, date]]) -> None:
        missing = wanted - self._known
        if not missing:
            return
        native = await self._native_tables(conn)
        for month in sorted({m for _, m in missing}):
            # One short transaction per month: other uploads wait for one month's tables at most.
            tables = [t for t in PARTITIONED_TABLES if (t, month) in missing and t in native]
            created = await self._create(conn, month, tables) if tables else []
            self._known |= {(t, m) for t, m in missing if m == month}
            for name in created:
                event(log, "partition_created", partition=name)

    async def _create(self, conn: Conn, month: date, tables: list[str]) -> list[str]:
        """Create `month`'s partitions of `tables` (in lock order) that do not exist yet; their names."""
        names = [partition_name(t, month) for t in tables]
        created: list[str] = []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            cur = await conn.execute(
                "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND pg_table_is_visible(oid)", (names,)
            )
            existing = {str(name) for (name,) in await cur.fetchall()}
            start = datetime(month.year, month.month, 1, tzinfo=UTC)
            end = datetime(*add_months(month, 1).timetuple()[:3], tzinfo=UTC)
            for table, name in zip(tables, names, strict=True):
                if name in existing:
                    continue
                await conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name), sql.Identifier(table), sql.Literal(start), sql.Literal(end)
                    )
                )
                created.append(name)
        return created


async def _copy(
    conn: Conn, table: str, columns: tuple[str, ...], types: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    async with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            await copy.write_row(row)


def _row(ctx: AgentContext, r: Record) -> tuple[Any, ...]:
    head = (ctx.org_id, ctx.site_id, ctx.agent_id, r.seq)
    if isinstance(r, Count):
        return (*head, r.sensor, r.line, from_ms(r.start_ms), from_ms(r.end_ms), r.entries, r.exits, r.clock)
    if isinstance(r, Occupancy):
        return (*head, r.sensor, r.zone, from_ms(r.at_ms), r.value, r.clock)
    if isinstance(r, Transaction):
        return (
            *head, r.terminal, r.txn_id, from_ms(r.at_ms), r.kind, r.amount_minor, r.currency, r.items, r.raw, r.clock
        )
    return (*head, r.sensor, from_ms(r.at_ms), r.kind, r.detail, r.lost_first, r.lost_last, r.clock)


def _completeness_statements(ctx: AgentContext, sums: rollups.Rollups) -> list[tuple[str, Sequence[Any]]]:
    """Coverage, the site's sensors, the estimated occupancy, outages and the cache notice (after the raw rows)."""
    site = (ctx.org_id, ctx.site_id)
    out: list[tuple[str, Sequence[Any]]] = []
    if sums.coverage:
        keys = sorted(sums.coverage)
        masks = [sums.coverage[k] for k in keys]
        out.append((_UPSERT_COVERAGE, (
            *site, [d for d, _ in keys], [s for _, s in keys], [_bits(m) for m in masks],
            [m.bit_count() for m in masks], [_bits(sums.spread.get(k, 0)) for k in keys],
        )))
    if sums.reporting:
        names = sorted(sums.reporting)
        reports = [sums.reporting[n] for n in names]
        out.append((_UPSERT_SITE_SENSORS, (
            *site, names, [r.counts for r in reports], [r.occupancy for r in reports],
            [r.first for r in reports], [r.last for r in reports],
        )))
    refresh = balance.refresh_for(sums.count_quarters, ctx.day_reset, ctx.zone)
    if refresh is not None:
        # The days whose estimated occupancy may have changed: replayed when next asked for (0006).
        out.append((_MARK_BALANCE, (*site, refresh.days)))
    events = outages.statements(ctx.org_id, ctx.site_id, ctx.agent_id, sums.events)
    out += events
    if events or sums.span is not None:
        # Delivered at commit, to every collector listening (collector/cache.py): theirs and ours.
        # A batch with outages changes completeness over windows known only in SQL: the whole site.
        span = None if events else sums.span
        out.append((_NOTIFY, (cache.CHANNEL, cache.notice(ctx.org_id, ctx.site_id, span))))
    return out


def _bits(mask: int) -> str:
    """A coverage mask as the text of a bit(128): quarter 0 is the leftmost bit."""
    return format(mask, "0128b")[::-1]


def _one(value: int) -> tuple[int]:
    return (value,)


def _counts(totals: rollups.CountTotals) -> tuple[int, int]:
    return (totals.entries, totals.exits)


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows to one list per column: the arrays `unnest` turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)]
