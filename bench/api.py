"""The analysts' API at fleet scale: 1,000 sites with a year of 15-minute counts (35 million rows).

Setup, in a private embedded PostgreSQL cluster (default /var/tmp/footfall-bench, reused while
its data matches the options; `--reload` starts over): one organization, 1,000 sites spread over
six time zones (two with 30- and 45-minute offsets), one agent and one sensor each, and a count
every 15 minutes of a whole year, binary-COPYed into the raw table; then the rollups the API
reads (counts_15m, counts_day, coverage, sensors, estimated occupancy) are built from the raw rows
in SQL, as ingest would have built them batch by batch.

Measured, through HTTP on a collector in this process (p50/p99 in ms):
- each API query computed afresh (`Cache-Control: no-cache`), and served from the answer cache;
- beside it, the same totals computed directly from the raw table in SQL, as the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import psycopg
from aiohttp import web
from footfall.collector import admin, balance
from footfall.collector.app import make_app
from footfall.collector.embedded_pg import EmbeddedPostgres
from footfall.collector.errors import MigrationError
from footfall.collector.migrate import migrate
from footfall.collector.settings import CollectorSettings
from footfall.collector.store import Store
from footfall.protocol.signing import generate_key, public_bytes

from .common import Report, machine, measure

NAME = "api"
ABOUT = "metrics API at fleet scale"
ZONES = ("Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Sydney",
         "America/Los_Angeles")
QUARTER = timedelta(minutes=15)
ORG = "bench"
TUNING = {"shared_buffers": "4GB", "work_mem": "64MB", "maintenance_work_mem": "1GB", "max_wal_size": "16GB",
          "effective_cache_size": "16GB", "checkpoint_timeout": "30min"}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The api benchmark's options."""
    group.add_argument("--sites", type=int, default=1000, help="sites in the fleet (1000)")
    group.add_argument("--year", type=int, default=2025, help="the year of data (2025)")
    group.add_argument("--runs", type=int, default=200, help="timed runs of each one-site query (200)")
    group.add_argument("--data-dir", type=Path, default=Path("/var/tmp/footfall-bench"),
                       help="the private cluster's home, kept for the next run (/var/tmp/footfall-bench)")
    group.add_argument("--reload", action="store_true", help="drop the loaded data and load it again")


async def run(args: argparse.Namespace) -> Report:
    """Load (or reuse) the fleet, then measure."""
    report = Report(NAME, machine=machine())
    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.data_dir.chmod(0o711)
    cluster = EmbeddedPostgres(args.data_dir, durable=False, timeout=600)
    await asyncio.to_thread(cluster.start)
    try:
        if await _tune(cluster.dsn):
            await asyncio.to_thread(cluster.stop)
            await asyncio.to_thread(cluster.start)
        report.setup["postgresql"] = ", ".join(f"{k}={v}" for k, v in TUNING.items()) + ", fsync=off"
        await _prepare(cluster, args, report)
        await _measure(cluster.dsn, args, report)
    finally:
        await asyncio.to_thread(cluster.stop)
    return report


async def _tune(dsn: str) -> bool:
    """Size the server for this 24 GiB machine; True when shared_buffers changed (a restart is needed)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SHOW shared_buffers")
        row = await cur.fetchone()
        for key, value in TUNING.items():
            await conn.execute(f"ALTER SYSTEM SET {key} = '{value}'".encode())
        await conn.execute("SELECT pg_reload_conf()")
        return row is None or row[0] != TUNING["shared_buffers"]


def _zone(index: int) -> str:
    return ZONES[index % len(ZONES)]


def site_id(index: int) -> str:
    return f"s{index:04d}"


async def _prepare(cluster: EmbeddedPostgres, args: argparse.Namespace, report: Report) -> None:
    wanted = f"sites={args.sites} year={args.year}"
    dsn = cluster.dsn
    row = None
    try:
        await migrate(dsn)
    except MigrationError as exc:
        # Data loaded by an older schema (a migration edited since): load it again rather than stop.
        print(f"the data in {args.data_dir} is from another schema ({exc}); loading it again", flush=True)
    else:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_meta (loaded text NOT NULL, rows bigint, seconds float8)"
            )
            cur = await conn.execute("SELECT loaded, rows, seconds FROM bench_meta")
            row = await cur.fetchone()
    if row is not None and row[0] == wanted and not args.reload:
        report.setup["data"] = f"reused: {wanted}, {row[1]:,} raw count rows (loaded in {row[2]:.0f} s)"
        return
    async with await psycopg.AsyncConnection.connect(cluster.dsn_for("postgres"), autocommit=True) as conn:
        await conn.execute("DROP DATABASE IF EXISTS footfall WITH (FORCE)")
        await conn.execute("CREATE DATABASE footfall")
    await migrate(dsn)
    started = clock.monotonic()
    steps: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE bench_meta (loaded text NOT NULL, rows bigint, seconds float8)")
        await admin.create_organization(conn, "Bench Retail", ORG)
        for i in range(args.sites):
            await admin.create_site(conn, ORG, site_id(i), _zone(i))
        # Real public keys: the collector verifies nothing against a weak one (the all-zero key, say).
        keys = [public_bytes(generate_key()) for _ in range(args.sites)]
        await conn.execute(
            "INSERT INTO agents (id, org_id, site_id, public_key) "
            "SELECT 'agt_bench' || lpad((n - 1)::text, 8, '0'), %s, 's' || lpad((n - 1)::text, 4, '0'), k "
            "FROM unnest(%s::bytea[]) WITH ORDINALITY AS u(k, n)",
            (ORG, keys),
        )
        await Store().ensure_ahead(conn, datetime(args.year, 1, 1, tzinfo=UTC), months=13)
        rows = await _copy_counts(conn, args)
        steps["raw COPY"] = clock.monotonic() - started
        for name, statement in _ROLLUPS:
            t0 = clock.monotonic()
            await conn.execute(statement.encode())
            steps[name] = clock.monotonic() - t0
        t0 = clock.monotonic()
        await _balances(conn, args)
        steps["balance_day"] = clock.monotonic() - t0
        t0 = clock.monotonic()
        await conn.execute("VACUUM ANALYZE")
        steps["vacuum analyze"] = clock.monotonic() - t0
        total = clock.monotonic() - started
        await conn.execute("INSERT INTO bench_meta VALUES (%s, %s, %s)", (wanted, rows, total))
    report.setup["data"] = f"loaded: {wanted}, {rows:,} raw count rows in {total:.0f} s"
    report.setup["load steps (s)"] = ", ".join(f"{k} {v:.0f}" for k, v in steps.items())


async def _copy_counts(conn: psycopg.AsyncConnection[Any], args: argparse.Namespace) -> int:
    """One count per site per quarter of the year, binary-COPYed into people_counts, 50 sites at a time.

    The rows are made by PostgreSQL (generate_series) and streamed out of one connection in COPY's
    binary format straight into a binary COPY on another, so Python only moves bytes: generating
    35 million rows one Python call at a time would measure Python, not the load.
    """
    start = datetime(args.year, 1, 1, tzinfo=UTC)
    quarters = int((datetime(args.year + 1, 1, 1, tzinfo=UTC) - start) / QUARTER)
    # A day's shape: quiet at night, busy mid-afternoon (by UTC quarter: good enough for timing).
    generate = """
        COPY (SELECT %(org)s::text, 's' || lpad(s::text, 4, '0'), 'agt_bench' || lpad(s::text, 8, '0'),
                     (q + 1)::int8, 'door'::text, 'main'::text,
                     %(start)s::timestamptz + q * interval '15 minutes',
                     %(start)s::timestamptz + (q + 1) * interval '15 minutes',
                     e::int8, greatest(0, e - (q + s) %% 3)::int8, 'ok'::text
              FROM generate_series(%(first)s::int, %(last)s::int) AS s,
                   generate_series(0, %(quarters)s::int - 1) AS q,
                   LATERAL (SELECT greatest(0, 12 - abs((q %% 96 - 60) / 4)) + (q * 7 + s) %% 5 AS e) AS x
              ORDER BY s, q)
        TO STDOUT (FORMAT BINARY)"""
    load = ("COPY people_counts (org_id, site_id, agent_id, seq, sensor, line, period_start, period_end, "
            "entries, exits, clock) FROM STDIN (FORMAT BINARY)")
    async with await psycopg.AsyncConnection.connect(conn.info.dsn, autocommit=True) as source:
        for first in range(0, args.sites, 50):
            params = {"org": ORG, "start": start, "first": first, "last": min(args.sites, first + 50) - 1,
                      "quarters": quarters}
            async with source.cursor() as out, out.copy(generate, params) as rows, conn.cursor() as into, \
                    into.copy(load) as sink:
                async for data in rows:
                    await sink.write(data)
            print(f"  loaded {min(args.sites, first + 50)} of {args.sites} sites", flush=True)
    return quarters * args.sites


_LOCAL_DAY = "(c.period_start AT TIME ZONE s.timezone)::date"
_ROLLUPS = [
    ("counts_15m", """
        INSERT INTO counts_15m (org_id, site_id, bucket_start, agent_id, sensor, line, entries, exits)
        SELECT org_id, site_id, date_bin('15 minutes', period_start, timestamptz '2000-01-01 00:00+00'), agent_id,
               sensor, line, sum(entries), sum(exits)
        FROM people_counts GROUP BY 1, 2, 3, 4, 5, 6"""),
    ("counts_day", f"""
        INSERT INTO counts_day (org_id, site_id, local_day, agent_id, sensor, line, entries, exits)
        SELECT c.org_id, c.site_id, {_LOCAL_DAY}, c.agent_id, c.sensor, c.line, sum(c.entries), sum(c.exits)
        FROM people_counts c JOIN sites s ON s.org_id = c.org_id AND s.id = c.site_id GROUP BY 1, 2, 3, 4, 5, 6"""),
    ("sensor_coverage_day", f"""
        INSERT INTO sensor_coverage_day (org_id, site_id, local_day, sensor, mask, quarters)
        SELECT org_id, site_id, local_day, sensor, mask, bit_count(mask) FROM (
          SELECT c.org_id, c.site_id, {_LOCAL_DAY} AS local_day, c.sensor,
                 bit_or(set_bit(repeat('0', 128)::bit(128),
                   (extract(epoch FROM c.period_start - ({_LOCAL_DAY}::timestamp AT TIME ZONE s.timezone)) / 900)::int,
                   1)) AS mask
          FROM people_counts c JOIN sites s ON s.org_id = c.org_id AND s.id = c.site_id GROUP BY 1, 2, 3, 4) AS m"""),
    ("site_sensors", """
        INSERT INTO site_sensors (org_id, site_id, sensor, counts, reporting_since, last_report_at)
        SELECT org_id, site_id, sensor, true, min(period_start), max(period_start)
        FROM people_counts GROUP BY 1, 2, 3"""),
]


async def _balances(conn: psycopg.AsyncConnection[Any], args: argparse.Namespace) -> None:
    """The estimated occupancy of every site and day, by the same function ingest calls."""
    for s in range(args.sites):
        zone = ZoneInfo(_zone(s))
        first = datetime(args.year, 1, 1, tzinfo=UTC)
        refresh = balance.refresh_for([first, datetime(args.year + 1, 1, 1, tzinfo=UTC) - QUARTER],
                                      time(4), zone)
        assert refresh is not None
        await conn.execute(
            "SELECT footfall_refresh_balance(%s, %s, %s::timestamptz[], %s::date[], %s::timestamptz[])",
            (ORG, site_id(s), refresh.resets, refresh.days, refresh.day_starts),
        )


async def _measure(dsn: str, args: argparse.Namespace, report: Report) -> None:
    app = make_app(dsn, CollectorSettings(pool_size=4))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        key = (await admin.create_api_key(conn, ORG, "analyst", "bench")).key
    year, n = args.year, args.sites
    day = date(year, 6, 10)
    single_year = {"from": f"{year}-01-01", "to": f"{year + 1}-01-01"}
    single_day = {"from": str(day), "to": str(day + timedelta(days=1)), "granularity": "15m"}
    fleet_month = {"from": f"{year}-06-01", "to": f"{year}-07-01"}
    fleet_year = {"from": f"{year}-01-01", "to": f"{year + 1}-01-01"}
    raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, base)

            def get(path: str, params: dict[str, str], fresh: bool = True) -> Any:
                headers = {"Authorization": f"Bearer {key}"}
                if fresh:
                    headers["Cache-Control"] = "no-cache"

                async def call(_: int) -> int:
                    async with session.get(base + path, params=params, headers=headers) as response:
                        body = await response.read()
                        assert response.status == 200, body[:300]
                        return len(body)

                return call

            def rotating(params: dict[str, str]) -> Any:
                async def call(i: int) -> int:
                    return await get(f"/v1/sites/{site_id((i * 37) % n)}/metrics", params)(i)

                return call

            cases: list[tuple[str, int, Any, Any, str]] = [
                ("one site, one year by day", args.runs, rotating(single_year),
                 _raw_daily(raw, [site_id(0)], date(year, 1, 1), date(year + 1, 1, 1)), "365 buckets"),
                ("one site, one day by 15 minutes", args.runs, rotating(single_day),
                 _raw_quarters(raw, site_id(0), day), "96 buckets"),
                (f"all {n} sites, one month by day", 30, get("/v1/metrics", fleet_month),
                 _raw_daily(raw, None, date(year, 6, 1), date(year, 7, 1)), "30 buckets"),
                (f"all {n} sites, one year by day", 20, get("/v1/metrics", fleet_year),
                 _raw_daily(raw, None, date(year, 1, 1), date(year + 1, 1, 1)), "365 buckets"),
            ]
            for name, runs, api_call, raw_call, note in cases:
                report.rows.append(await measure(f"API {name}", runs, api_call, note + ", computed afresh"))
                print(report.rows[-1], flush=True)
                raw_runs = {args.runs: 50, 30: 5, 20: 2}[runs]
                report.rows.append(await measure(f"SQL on raw rows: {name}", raw_runs, raw_call, "reference",
                                                 warmup=1))
                print(report.rows[-1], flush=True)
            for name, path, params in (("one site, one year by day", f"/v1/sites/{site_id(0)}/metrics", single_year),
                                       (f"all {n} sites, one year by day", "/v1/metrics", fleet_year)):
                report.rows.append(await measure(f"API {name}", 200, get(path, params, fresh=False),
                                                 "from the answer cache"))
    finally:
        await raw.close()
        await runner.cleanup()


async def _wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = clock.monotonic() + 30
    while clock.monotonic() < deadline:
        async with session.get(base + "/v1/health") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the collector did not become healthy")


def _raw_daily(conn: psycopg.AsyncConnection[Any], sites: list[str] | None, first: date, last: date) -> Any:
    """Entries and exits per local day straight from people_counts (every site in its own zone)."""
    statement = (
        "SELECT (c.period_start AT TIME ZONE s.timezone)::date AS d, sum(c.entries), sum(c.exits) "
        "FROM people_counts c JOIN sites s ON s.org_id = c.org_id AND s.id = c.site_id "
        "WHERE c.org_id = %(org)s AND (%(sites)s::text[] IS NULL OR c.site_id = ANY(%(sites)s)) "
        "AND c.period_start >= %(lo)s AND c.period_start < %(hi)s "
        "AND (c.period_start AT TIME ZONE s.timezone)::date >= %(first)s "
        "AND (c.period_start AT TIME ZONE s.timezone)::date < %(last)s GROUP BY d ORDER BY d"
    )
    params = {"org": ORG, "sites": sites, "first": first, "last": last,
              "lo": datetime.combine(first, datetime.min.time(), tzinfo=UTC) - timedelta(hours=15),
              "hi": datetime.combine(last, datetime.min.time(), tzinfo=UTC) + timedelta(hours=15)}
    return _sql(conn, statement, params)


def _raw_quarters(conn: psycopg.AsyncConnection[Any], site: str, day: date) -> Any:
    zone = ZoneInfo(_zone(0))
    lo = balance.day_start(day, zone)
    hi = balance.day_start(day + timedelta(days=1), zone)
    statement = ("SELECT date_bin('15 minutes', period_start, timestamptz '2000-01-01 00:00+00') AS q, sum(entries), "
                 "sum(exits) FROM people_counts WHERE org_id = %(org)s AND site_id = %(site)s "
                 "AND period_start >= %(lo)s AND period_start < %(hi)s GROUP BY q ORDER BY q")
    return _sql(conn, statement, {"org": ORG, "site": site, "lo": lo, "hi": hi})


def _sql(conn: psycopg.AsyncConnection[Any], statement: str, params: dict[str, Any]) -> Any:
    async def call(_: int) -> int:
        cur = await conn.execute(statement.encode(), params)
        return len(await cur.fetchall())

    return call
