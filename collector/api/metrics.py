"""Analysts' metrics: `GET /v1/sites/{site}/footfall?from=&to=&granularity=hour|day[&format=csv]`.

Answers are in the site's local time. `from` and `to` take a local date (`2026-03-08`: the
start of that day in the site's zone) or an ISO datetime with an offset; `from` is inclusive,
`to` exclusive. Day buckets come from `counts_day` (local days computed at ingest); hour
buckets are sums of `counts_15m` rows over each local hour, which makes a spring-forward day
23 hours long and gives the repeated hour of a fall-back day twice, with its two offsets.
Every bucket of the range is present, with zeros where nothing was counted.

Needs an analyst or fleet_admin key of the site's organization; another organization's site
answers 404, the same as a site that does not exist.
"""

from __future__ import annotations

import bisect
import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..localtime import Bucket, day_buckets, hour_buckets, is_day_start, is_hour_start, local_iso, parse_bound
from ..state import STATE
from .auth import authenticate

GRANULARITIES = ("hour", "day")
# The longest range per granularity: a month of hours, two years of days.
MAX_RANGE = {"hour": timedelta(days=31, hours=1), "day": timedelta(days=732)}


@dataclass(frozen=True, slots=True)
class Query:
    """A checked footfall query: UTC bounds that fall on bucket starts of the site's zone."""

    start: datetime
    end: datetime
    granularity: str


def parse_query(params: Any, zone: ZoneInfo) -> Query:
    """Check the query string; 400 with a code and a message saying what to change."""
    granularity = params.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise BadRequest(
            f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}", code="bad_granularity"
        )
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        text = params.get(name)
        if not text:
            raise BadRequest(
                f"`{name}` is required: a local date (2026-03-08) or an ISO datetime with an offset", code="bad_range"
            )
        try:
            bounds[name] = parse_bound(text, zone)
        except ValueError as exc:
            raise BadRequest(f"`{name}`: {exc}", code="bad_date") from None
    start, end = bounds["from"], bounds["to"]
    if end <= start:
        raise BadRequest("`to` must be after `from` (`from` is inclusive, `to` exclusive)", code="bad_range")
    if end - start > MAX_RANGE[granularity]:
        hint = "split the range or use granularity=day" if granularity == "hour" else "split the range"
        raise BadRequest(
            f"a {granularity} query covers at most {MAX_RANGE[granularity].days} days; {hint}", code="range_too_large"
        )
    aligned = is_day_start if granularity == "day" else is_hour_start
    for name, moment in bounds.items():
        if not aligned(moment, zone):
            raise BadRequest(
                f"`{name}` ({local_iso(moment, zone)} local) is not the start of a local {granularity}",
                code="unaligned_range",
            )
    return Query(start, end, granularity)


async def footfall_handler(request: web.Request) -> web.StreamResponse:
    """Entries and exits per local hour or day for one site."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, "analyst", "fleet_admin")
    site_id = request.match_info["site"]
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT timezone FROM sites WHERE org_id = %s AND id = %s", (principal.org_id, site_id)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no site {site_id!r} in this key's organization")
        zone = ZoneInfo(row[0])
        query = parse_query(request.query, zone)
        if query.granularity == "day":
            buckets = day_buckets(query.start, query.end, zone)
            cur = await conn.execute(
                "SELECT local_day, sum(entries), sum(exits) FROM counts_day "
                "WHERE org_id = %s AND site_id = %s AND local_day >= %s AND local_day < %s GROUP BY local_day",
                (principal.org_id, site_id, query.start.astimezone(zone).date(), query.end.astimezone(zone).date()),
            )
            by_day = {day: (int(e), int(x)) for day, e, x in await cur.fetchall()}
            totals = [by_day.get(b.day, (0, 0)) for b in buckets]
        else:
            buckets = hour_buckets(query.start, query.end, zone)
            cur = await conn.execute(
                "SELECT bucket_start, sum(entries), sum(exits) FROM counts_15m "
                "WHERE org_id = %s AND site_id = %s AND bucket_start >= %s AND bucket_start < %s GROUP BY bucket_start",
                (principal.org_id, site_id, query.start, query.end),
            )
            totals = _sum_into(buckets, await cur.fetchall())
    rows = [
        {"start": local_iso(b.start, zone), "end": local_iso(b.end, zone), "entries": e, "exits": x}
        for b, (e, x) in zip(buckets, totals, strict=True)
    ]
    if request.query.get("format") == "csv":
        return _csv(rows)
    return web.json_response(
        {
            "site": site_id,
            "timezone": zone.key,
            "granularity": query.granularity,
            "from": local_iso(query.start, zone),
            "to": local_iso(query.end, zone),
            "buckets": rows,
            "totals": {"entries": sum(e for e, _ in totals), "exits": sum(x for _, x in totals)},
        }
    )


def _sum_into(buckets: list[Bucket], quarters: list[tuple[datetime, Any, Any]]) -> list[tuple[int, int]]:
    """Add each 15-minute row to the hour bucket holding it (buckets are sorted and contiguous)."""
    sums = [[0, 0] for _ in buckets]
    starts = [b.start for b in buckets]
    for moment, entries, exits in quarters:
        index = bisect.bisect_right(starts, moment) - 1
        sums[index][0] += int(entries)
        sums[index][1] += int(exits)
    return [(e, x) for e, x in sums]


def _csv(rows: list[dict[str, Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["start", "end", "entries", "exits"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(text=out.getvalue(), content_type="text/csv")
