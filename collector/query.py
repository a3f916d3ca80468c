"""Metrics of a set of sites over a local range, from the rollups only (never the raw tables).

`compute(conn, query)` returns a Series: one Totals per bucket key (collector/periods.py), the
sites adding up under equal keys. Two paths read different rollups and give the same answers:

- day, week and month answers read the local-day rollups (counts_day, sales_day,
  sensor_coverage_day, occupancy_day, balance_day): one row per site, sensor (or terminal) and
  day, aggregated across sites by PostgreSQL, so a fleet-wide year is a few hundred rows to Python;
- 15m and hour answers, and any answer restricted to trading hours, read the 15-minute rollups
  (counts_15m, sales_15m, occupancy_15m) and the coverage masks, quarter by quarter, because a
  local hour or a trading interval is a set of quarters.

Completeness: a site's expected sensors (collector/sitesettings.py, SiteInfo.expected) times the
quarters of the bucket is what should have reported; the coverage rollup says what did (a quarter
only spanned by a count spread over hours counts for its day, not for itself: migration 0018). Outages
(collector/outages.py) flag the buckets they overlap. The caller runs this on a connection whose
transaction is bound to the organization (collector/tenancy.py), so row security applies too.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from . import balance
from .measures import NEEDS_COUNTS, NEEDS_OCCUPANCY, NEEDS_SALES, Totals
from .periods import INTRADAY, QUARTER, Key, SiteBucket, key_sort, period_of, quarter_key, site_buckets, utc_range
from .rollups import bucket_of
from .sitesettings import SiteInfo

Conn = psycopg.AsyncConnection[Any]
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """What to compute: sites of one organization, wall-clock bounds, granularity and options."""

    org_id: str
    sites: tuple[SiteInfo, ...]
    start: datetime
    end: datetime
    granularity: str
    week_start: int = 1
    metrics: tuple[str, ...] = ()
    trading_hours: bool = False


@dataclass(slots=True)
class Series:
    """Per-bucket totals in key order, each bucket's UTC span, and the currencies seen."""

    keys: list[Key]
    buckets: dict[Key, Totals]
    spans: dict[Key, tuple[datetime, datetime]]
    currencies: list[str] = field(default_factory=list)

    def total(self) -> Totals:
        """The whole range's totals."""
        out = Totals()
        for key in self.keys:
            out.merge(self.buckets[key])
        return out


@dataclass(slots=True)
class _Plan:
    """The buckets of every site, computed once per zone."""

    query: MetricsQuery
    by_zone: dict[str, list[SiteBucket]] = field(default_factory=dict)

    def buckets(self, site: SiteInfo) -> list[SiteBucket]:
        found = self.by_zone.get(site.zone.key)
        if found is None:
            q = self.query
            found = self.by_zone[site.zone.key] = site_buckets(q.start, q.end, site.zone, q.granularity, q.week_start)
        return found


def utc_span(query: MetricsQuery) -> tuple[datetime, datetime]:
    """The earliest and latest instants the query's sites cover."""
    ranges = [utc_range(query.start, query.end, s.zone) for s in query.sites]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


async def compute(conn: Conn, query: MetricsQuery) -> Series:
    """The Series of `query`, from the rollups."""
    plan = _Plan(query)
    buckets: dict[Key, Totals] = {}
    spans: dict[Key, tuple[datetime, datetime]] = {}
    for site in query.sites:
        for b in plan.buckets(site):
            if b.key not in buckets:
                buckets[b.key] = Totals()
                spans[b.key] = (b.start, b.end)
            else:
                first, last = spans[b.key]
                spans[b.key] = (min(first, b.start), max(last, b.end))
    series = Series(sorted(buckets, key=key_sort), buckets, spans)
    if query.granularity in INTRADAY or query.trading_hours:
        await _from_quarters(conn, plan, series)
    else:
        await _from_days(conn, plan, series)
    await _outages(conn, plan, series)
    return series


def _site_ids(sites: Iterable[SiteInfo]) -> list[str]:
    return [s.id for s in sites]


def _expected_pairs(sites: Iterable[SiteInfo]) -> tuple[list[str], list[str]]:
    pairs = [(s.id, name) for s in sites for name, _, _ in s.expected()]
    return [p[0] for p in pairs], [p[1] for p in pairs]


_MODE_SQL = "CASE g.mode WHEN 'entries' THEN 2 * c.entries WHEN 'exits' THEN 2 * c.exits ELSE c.entries + c.exits END"


async def _from_days(conn: Conn, plan: _Plan, series: Series) -> None:
    q = plan.query
    sites = list(q.sites)
    ids = _site_ids(sites)
    first, last = q.start.date(), q.end.date()
    key_of: dict[date, Key] = {
        day: period_of(day, q.granularity, q.week_start)
        for day in (first + timedelta(days=i) for i in range((last - first).days))
    }
    wanted = set(q.metrics)
    where = "c.org_id = %(org)s AND c.site_id = ANY(%(sites)s) AND c.local_day >= %(first)s AND c.local_day < %(last)s"
    params: dict[str, Any] = {"org": q.org_id, "sites": ids, "first": first, "last": last}
    params["modes"] = [s.visitors for s in sites]
    params["exp_sites"], params["exp_sensors"] = _expected_pairs(sites)
    sensor_sites = [s.id for s in sites if s.has_occupancy_sensors]
    params["occ_sites"] = sensor_sites
    params["bal_sites"] = [s.id for s in sites if not s.has_occupancy_sensors]
    statements: list[tuple[str, str]] = []
    if wanted & NEEDS_COUNTS:
        statements.append(("counts", f"""
            SELECT c.local_day, sum(c.entries), sum(c.exits), sum({_MODE_SQL}) FROM counts_day c
            JOIN unnest(%(sites)s::text[], %(modes)s::text[]) AS g(site_id, mode) ON g.site_id = c.site_id
            WHERE {where} GROUP BY c.local_day"""))
    if wanted & NEEDS_SALES:
        statements.append(("sales", f"""
            SELECT c.local_day, c.currency, sum(c.sales_count), sum(c.sales_amount), sum(c.refunds_count),
                   sum(c.refunds_amount), sum(c.voids_count), sum(c.voids_amount), sum(c.items)
            FROM sales_day c WHERE {where} GROUP BY c.local_day, c.currency"""))
    statements.append(("coverage", f"""
        SELECT c.local_day, sum(c.quarters) FROM sensor_coverage_day c
        JOIN unnest(%(exp_sites)s::text[], %(exp_sensors)s::text[]) AS e(site_id, sensor)
          ON e.site_id = c.site_id AND e.sensor = c.sensor
        WHERE {where} GROUP BY c.local_day"""))
    if wanted & NEEDS_OCCUPANCY:
        occ_where = where.replace("%(sites)s", "%(occ_sites)s")
        bal_where = where.replace("%(sites)s", "%(bal_sites)s")
        statements.append(("occupancy", f"""
            SELECT local_day, sum(peak) FROM (
              SELECT c.local_day, c.peak FROM occupancy_day c WHERE {occ_where}
              UNION ALL SELECT c.local_day, c.peak FROM balance_day c WHERE {bal_where}) AS o
            GROUP BY local_day"""))
        statements.append(("stale", """
            SELECT c.site_id, min(c.local_day), max(c.local_day) FROM balance_day c
            WHERE c.org_id = %(org)s AND c.site_id = ANY(%(bal_sites)s) AND c.version > c.refreshed
              AND c.local_day >= %(first)s AND c.local_day < %(last)s
            GROUP BY c.site_id"""))
    results: dict[str, list[tuple[Any, ...]]] = {}
    async with conn.pipeline():
        cursors = [(name, await conn.execute(sql.encode(), params)) for name, sql in statements]
    for name, cur in cursors:
        results[name] = await cur.fetchall()
    if results.get("stale"):
        # Batches arrived since these days' estimated occupancy was computed: replay, then read again.
        await _replay_balances(conn, q, results["stale"])
        occupancy_sql = dict(statements)["occupancy"]
        results["occupancy"] = await (await conn.execute(occupancy_sql.encode(), params)).fetchall()
    buckets = series.buckets
    for day, entries, exits, visitors2 in results.get("counts", []):
        totals = buckets[key_of[day]]
        totals.entries += int(entries)
        totals.exits += int(exits)
        totals.visitors2 += int(visitors2)
    currencies: set[str] = set()
    for day, currency, *values in results.get("sales", []):
        buckets[key_of[day]].add_sales(currency, values)
        currencies.add(currency)
    series.currencies = sorted(currencies)
    for day, quarters in results["coverage"]:
        buckets[key_of[day]].reported += int(quarters)
    if "occupancy" in results:
        for totals in buckets.values():
            totals.add_occupancy(0)
        for day, peak in results["occupancy"]:
            buckets[key_of[day]].add_occupancy(int(peak))
    _expected_by_day(plan, series, key_of)


async def _replay_balances(conn: Conn, q: MetricsQuery, stale: list[tuple[Any, ...]]) -> None:
    """Recompute the stale days' estimated occupancy of each site (migrations/0006)."""
    by_id = {s.id: s for s in q.sites}
    for site_id, first, last in stale:
        site = by_id[site_id]
        edges = [balance.day_start(first, site.zone), balance.day_start(last + timedelta(days=1), site.zone) - QUARTER]
        refresh = balance.refresh_for(edges, site.day_reset, site.zone)
        assert refresh is not None
        await conn.execute(
            "SELECT footfall_refresh_balance(%s, %s, %s::timestamptz[], %s::date[], %s::timestamptz[])",
            (q.org_id, site_id, refresh.resets, refresh.days, refresh.day_starts),
        )


def _expected_by_day(plan: _Plan, series: Series, key_of: dict[date, Key]) -> None:
    """Expected sensor-quarters per bucket: each expected sensor times the quarters of the days it was expected."""
    q = plan.query
    first, last = q.start.date(), q.end.date()
    days = [first + timedelta(days=i) for i in range((last - first).days)]
    zone_days: dict[str, list[tuple[date, datetime, datetime]]] = {}
    whole: dict[str, int] = defaultdict(int)
    zones: dict[str, ZoneInfo] = {}
    for site in q.sites:
        zones[site.zone.key] = site.zone
        spans = zone_days.get(site.zone.key)
        if spans is None:
            starts = [balance.day_start(d, site.zone) for d in [*days, last]]
            spans = zone_days[site.zone.key] = [(d, starts[i], starts[i + 1]) for i, d in enumerate(days)]
        if not spans:
            continue
        range_start, range_end = spans[0][1], spans[-1][2]
        for _, since, until in site.expected():
            since_q = bucket_of(since) if since is not None else None
            if (since_q is None or since_q <= range_start) and (until is None or until >= range_end):
                whole[site.zone.key] += 1
                continue
            for day, start, end in spans:
                lo = max(start, since_q) if since_q is not None else start
                hi = min(end, until) if until is not None else end
                if hi > lo:
                    series.buckets[key_of[day]].expected += _quarters(lo, hi)
    for zone_key, count in whole.items():
        for day, start, end in zone_days[zone_key]:
            series.buckets[key_of[day]].expected += count * ((end - start) // QUARTER)


def _quarters(lo: datetime, hi: datetime) -> int:
    """Whole quarters from `lo` (a quarter start) up to `hi`, rounding a partial last quarter up."""
    return -((lo - hi) // QUARTER)


async def _from_quarters(conn: Conn, plan: _Plan, series: Series) -> None:
    """Every metric quarter by quarter: intraday granularities and trading-hours answers."""
    q = plan.query
    wanted = set(q.metrics)
    sites = list(q.sites)
    # site -> quarter -> bucket key, trading quarters only; and quarter -> its local quarter key.
    quarter_keys: dict[str, dict[datetime, Key]] = {}
    local_quarter: dict[str, dict[datetime, Key]] = {}
    zone_cache: dict[str, tuple[dict[datetime, Key], dict[datetime, Key]]] = {}
    for site in sites:
        cache_key = site.zone.key if site.hours is None or not q.trading_hours else None
        if cache_key is not None and cache_key in zone_cache:
            quarter_keys[site.id], local_quarter[site.id] = zone_cache[cache_key]
            continue
        keys: dict[datetime, Key] = {}
        locals_: dict[datetime, Key] = {}
        for b in plan.buckets(site):
            moment = b.start
            while moment < b.end:
                if not q.trading_hours or site.hours is None or site.hours.is_trading(
                    moment.astimezone(site.zone).replace(tzinfo=None)
                ):
                    keys[moment] = b.key
                    locals_[moment] = quarter_key(moment, site.zone, "15m", q.week_start)
                moment += QUARTER
        quarter_keys[site.id], local_quarter[site.id] = keys, locals_
        if cache_key is not None:
            zone_cache[cache_key] = (keys, locals_)
    starts = {s.id: utc_range(q.start, q.end, s.zone) for s in sites}
    lo = min(r[0] for r in starts.values())
    hi = max(r[1] for r in starts.values())
    balance_sites = [s for s in sites if not s.has_occupancy_sensors] if wanted & NEEDS_OCCUPANCY else []
    counts_from = min([lo, *(balance.reset_before(starts[s.id][0], s.day_reset, s.zone) for s in balance_sites)])
    params: dict[str, Any] = {"org": q.org_id, "sites": _site_ids(sites), "lo": lo, "hi": hi}
    params["counts_from"] = counts_from
    params["first_day"] = min(s.date() for s in (lo.astimezone(x.zone) for x in sites)) - timedelta(days=1)
    params["last_day"] = max(s.date() for s in (hi.astimezone(x.zone) for x in sites)) + timedelta(days=1)
    params["exp_sites"], params["exp_sensors"] = _expected_pairs(sites)
    params["occ_sites"] = [s.id for s in sites if s.has_occupancy_sensors]
    where = "c.org_id = %(org)s AND c.site_id = ANY(%(sites)s)"
    statements: list[tuple[str, str]] = []
    if wanted & (NEEDS_COUNTS | NEEDS_OCCUPANCY):
        statements.append(("counts", f"""
            SELECT c.site_id, c.bucket_start, sum(c.entries), sum(c.exits) FROM counts_15m c
            WHERE {where} AND c.bucket_start >= %(counts_from)s AND c.bucket_start < %(hi)s
            GROUP BY c.site_id, c.bucket_start ORDER BY c.site_id, c.bucket_start"""))
    if wanted & NEEDS_SALES:
        statements.append(("sales", f"""
            SELECT c.site_id, c.bucket_start, c.currency, sum(c.sales_count), sum(c.sales_amount),
                   sum(c.refunds_count), sum(c.refunds_amount), sum(c.voids_count), sum(c.voids_amount), sum(c.items)
            FROM sales_15m c WHERE {where} AND c.bucket_start >= %(lo)s AND c.bucket_start < %(hi)s
            GROUP BY c.site_id, c.bucket_start, c.currency"""))
    statements.append(("coverage", f"""
        SELECT c.site_id, c.local_day, c.sensor, (c.mask & ~c.spread)::text FROM sensor_coverage_day c
        JOIN unnest(%(exp_sites)s::text[], %(exp_sensors)s::text[]) AS e(site_id, sensor)
          ON e.site_id = c.site_id AND e.sensor = c.sensor
        WHERE {where} AND c.local_day >= %(first_day)s AND c.local_day <= %(last_day)s"""))
    if wanted & NEEDS_OCCUPANCY and params["occ_sites"]:
        statements.append(("occupancy", """
            SELECT c.site_id, c.bucket_start, sum(c.peak) FROM occupancy_15m c
            WHERE c.org_id = %(org)s AND c.site_id = ANY(%(occ_sites)s)
              AND c.bucket_start >= %(lo)s AND c.bucket_start < %(hi)s
            GROUP BY c.site_id, c.bucket_start"""))
    results: dict[str, list[tuple[Any, ...]]] = {}
    async with conn.pipeline():
        cursors = [(name, await conn.execute(sql.encode(), params)) for name, sql in statements]
    for name, cur in cursors:
        results[name] = await cur.fetchall()
    by_id = {s.id: s for s in sites}
    buckets = series.buckets
    counts_by_site: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)
    for site_id, quarter, entries_sum, exits_sum in results.get("counts", []):
        entries, exits = int(entries_sum), int(exits_sum)
        counts_by_site[site_id].append((quarter, entries, exits))
        key = quarter_keys[site_id].get(quarter)
        if key is None:
            continue
        totals = buckets[key]
        totals.entries += entries
        totals.exits += exits
        mode = by_id[site_id].visitors
        totals.visitors2 += 2 * entries if mode == "entries" else 2 * exits if mode == "exits" else entries + exits
    currencies: set[str] = set()
    for site_id, quarter, currency, *values in results.get("sales", []):
        key = quarter_keys[site_id].get(quarter)
        if key is not None:
            buckets[key].add_sales(currency, values)
            currencies.add(currency)
    series.currencies = sorted(currencies)
    _coverage_by_quarter(sites, quarter_keys, results["coverage"], series)
    if wanted & NEEDS_OCCUPANCY:
        peaks: dict[Key, int] = defaultdict(int)  # local quarter key -> the group's occupancy
        bucket_of_local: dict[Key, Key] = {}
        for site_id, quarter, peak in results.get("occupancy", []):
            local = local_quarter[site_id].get(quarter)
            if local is not None:
                peaks[local] += int(peak)
        for site in balance_sites:
            _balance_quarters(site, starts[site.id], counts_by_site.get(site.id, []), local_quarter[site.id], peaks)
        for site in sites:
            for quarter, local in local_quarter[site.id].items():
                bucket_of_local[local] = quarter_keys[site.id][quarter]
        for totals in buckets.values():
            totals.add_occupancy(0)
        for local, bucket in bucket_of_local.items():
            buckets[bucket].add_occupancy(peaks.get(local, 0))


def _balance_quarters(
    site: SiteInfo,
    span: tuple[datetime, datetime],
    counts: list[tuple[datetime, int, int]],
    local_quarter: dict[datetime, Key],
    peaks: dict[Key, int],
) -> None:
    """Add the site's estimated occupancy after each of its quarters in the range to `peaks`."""
    start = balance.reset_before(span[0], site.day_reset, site.zone)
    values = balance.replay(counts, start, site.day_reset, site.zone)
    level = 0
    next_reset = balance.reset_at(start.astimezone(site.zone).date() + timedelta(days=1), site.day_reset, site.zone)
    moment = start
    while moment < span[1]:
        while moment >= next_reset:
            level = 0
            next_reset = balance.reset_at(
                next_reset.astimezone(site.zone).date() + timedelta(days=1), site.day_reset, site.zone
            )
        level = values.get(moment, level)
        local = local_quarter.get(moment)
        if local is not None:
            peaks[local] += level
        moment += QUARTER


def _coverage_by_quarter(
    sites: list[SiteInfo], quarter_keys: dict[str, dict[datetime, Key]], rows: list[tuple[Any, ...]], series: Series
) -> None:
    """Reported and expected sensor-quarters per bucket, trading quarters only."""
    windows: dict[tuple[str, str], tuple[datetime | None, datetime | None]] = {}
    for site in sites:
        keys = quarter_keys[site.id]
        per_key: dict[Key, int] = defaultdict(int)
        for key in keys.values():
            per_key[key] += 1
        first, last = (min(keys), max(keys)) if keys else (None, None)
        for name, since, until in site.expected():
            since_q = bucket_of(since) if since is not None else None
            windows[(site.id, name)] = (since_q, until)
            if first is None or last is None:
                continue
            if (since_q is None or since_q <= first) and (until is None or until > last):
                for key, n in per_key.items():  # expected over the whole range: every quarter counts
                    series.buckets[key].expected += n
                continue
            for quarter, key in keys.items():
                if (since_q is None or quarter >= since_q) and (until is None or quarter < until):
                    series.buckets[key].expected += 1
    zones = {s.id: s.zone for s in sites}
    day_starts: dict[tuple[str, date], datetime] = {}
    for site_id, day, sensor, mask in rows:
        zone = zones[site_id]
        start = day_starts.get((zone.key, day))
        if start is None:
            start = day_starts[(zone.key, day)] = balance.day_start(day, zone)
        since, until = windows[(site_id, sensor)]
        keys = quarter_keys[site_id]
        index = mask.find("1")
        while index >= 0:
            quarter = start + index * QUARTER
            found = keys.get(quarter)
            if found is not None and (since is None or quarter >= since) and (until is None or quarter < until):
                series.buckets[found].reported += 1
            index = mask.find("1", index + 1)


async def _outages(conn: Conn, plan: _Plan, series: Series) -> None:
    """Flag the buckets an outage overlaps (an open outage runs on; a zero-length one touches its instant's bucket)."""
    q = plan.query
    lo, hi = utc_span(q)
    cur = await conn.execute(
        "SELECT site_id, starts_at, ends_at FROM outages WHERE org_id = %s AND site_id = ANY(%s) "
        "AND starts_at < %s AND (ends_at IS NULL OR ends_at >= %s)",
        (q.org_id, _site_ids(q.sites), hi, lo),
    )
    by_id = {s.id: s for s in q.sites}
    for site_id, starts_at, ends_at in await cur.fetchall():
        buckets = plan.buckets(by_id[site_id])
        begins = [b.start for b in buckets]
        end = ends_at if ends_at is not None else _FAR_FUTURE
        index = max(0, bisect.bisect_right(begins, starts_at) - 1)
        while index < len(buckets):
            b = buckets[index]
            if b.start > end or (b.start == end and end != starts_at):
                break
            if b.end > starts_at:
                series.buckets[b.key].gap = True
            index += 1
