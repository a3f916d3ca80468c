"""Analysts' metrics: one site, a group of sites, and the original footfall view.

- `GET /v1/sites/{site}/metrics`: every metric of collector/measures.py per local bucket of one site.
- `GET /v1/metrics?site=a,b&tag=region:north`: the same for a group (named sites, every site
  having all the tags, or without either the whole organization), each site counted in its own
  local periods and added up under equal local periods.
- `GET /v1/sites/{site}/footfall`: entries and exits per local hour or day (the first API, kept).

Parameters: collector/api/params.py. Answers: collector/api/render.py. The computation
(collector/query.py) goes through the answer cache (collector/cache.py): identical concurrent
requests share one computation; a request with `Cache-Control: no-cache` computes afresh.
Needs an analyst or fleet_admin key; another organization's site answers 404, like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from ..cache import Scope
from ..errors import NotFound
from ..periods import comparison
from ..query import Conn, MetricsQuery, Series, compute, utc_span
from ..sites import load_sites, week_start_of
from ..sitesettings import SiteInfo
from ..state import STATE, CollectorState
from ..tenancy import KeyScope, keyed
from .params import (
    FOOTFALL_QUERY,
    GROUP_METRICS_QUERY,
    SITE_METRICS_QUERY,
    Options,
    group_bounds,
    options,
    response_format,
    site_bounds,
)
from .render import Rendered, answer_document, is_closed, rendered, send

READERS = ("analyst", "fleet_admin")


@keyed(*READERS, query=SITE_METRICS_QUERY)
async def site_metrics_handler(request: web.Request, scope: KeyScope) -> web.StreamResponse:
    """`GET /v1/sites/{site}/metrics`."""
    state = request.app[STATE]
    fmt = response_format(request.query, request.headers.get("Accept", ""))
    async with scope.connection() as conn:
        site = await _one_site(conn, scope.org_id, request.match_info["site"])
        opts = options(request.query, await week_start_of(conn, scope.org_id))
        start, end = site_bounds(request.query, site, opts)
        answer, last = await _answer(request, state, conn, scope.org_id, (site,), start, end, opts, True)
    return await send(request, answer, fmt, is_closed(last))


@keyed(*READERS, query=GROUP_METRICS_QUERY)
async def group_metrics_handler(request: web.Request, scope: KeyScope) -> web.StreamResponse:
    """`GET /v1/metrics`."""
    state = request.app[STATE]
    fmt = response_format(request.query, request.headers.get("Accept", ""))
    named = sorted({s.strip() for v in request.query.getall("site", []) for s in v.split(",") if s.strip()})
    tags = tuple(sorted({t.strip() for v in request.query.getall("tag", []) for t in v.split(",") if t.strip()}))
    async with scope.connection() as conn:
        sites = await load_sites(conn, scope.org_id, named or None, tags)
        missing = sorted(set(named) - {s.id for s in sites})
        if missing:
            raise NotFound(f"no site {', '.join(map(repr, missing))} in this key's organization", code="unknown_site")
        if not sites:
            raise NotFound("no site of this key's organization matches", code="unknown_site")
        opts = options(request.query, await week_start_of(conn, scope.org_id))
        start, end = group_bounds(request.query, opts)
        answer, last = await _answer(request, state, conn, scope.org_id, tuple(sites), start, end, opts, False)
    return await send(request, answer, fmt, is_closed(last))


@keyed(*READERS, query=FOOTFALL_QUERY)
async def footfall_handler(request: web.Request, scope: KeyScope) -> web.StreamResponse:
    """`GET /v1/sites/{site}/footfall`: entries and exits per local hour or day."""
    fmt = request.query.get("format", "json")
    async with scope.connection() as conn:
        site = await _one_site(conn, scope.org_id, request.match_info["site"])
        params = {k: v for k, v in request.query.items() if k in ("from", "to", "granularity")}
        params["metrics"] = "entries,exits"
        opts = options(params, 1, granularities=("hour", "day"))
        start, end = site_bounds(params, site, opts)
        query = MetricsQuery(scope.org_id, (site,), start, end, opts.granularity, 1, opts.metrics)
        series = await compute(conn, query)
    document = answer_document(series, query, single=True)
    rows = [{"start": b["start"], "end": b["end"], "entries": b["entries"], "exits": b["exits"]}
            for b in document["buckets"]]
    legacy = {
        "site": site.id, "timezone": site.zone.key, "granularity": opts.granularity,
        "from": document["from"], "to": document["to"], "buckets": rows,
        "totals": {"entries": document["totals"]["entries"], "exits": document["totals"]["exits"]},
    }
    if fmt == "csv":
        lines = ["start,end,entries,exits", *(f"{r['start']},{r['end']},{r['entries']},{r['exits']}" for r in rows)]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/csv")
    return web.json_response(legacy)


async def _one_site(conn: Conn, org_id: str, site_id: str) -> SiteInfo:
    sites = await load_sites(conn, org_id, [site_id])
    if not sites:
        raise NotFound(f"no site {site_id!r} in this key's organization")
    return sites[0]


async def _answer(
    request: web.Request,
    state: CollectorState,
    conn: Conn,
    org_id: str,
    sites: tuple[SiteInfo, ...],
    start: datetime,
    end: datetime,
    opts: Options,
    single: bool,
) -> tuple[Rendered, datetime]:
    """The answer and the end of its latest range, from the cache or computed now."""
    query = MetricsQuery(org_id, sites, start, end, opts.granularity, opts.week_start, opts.metrics,
                         opts.trading_hours)
    other: MetricsQuery | None = None
    if opts.compare is not None:
        other_start, other_end = comparison(start, end, opts.granularity, opts.compare)
        other = MetricsQuery(org_id, sites, other_start, other_end, opts.granularity, opts.week_start,
                             opts.metrics, opts.trading_hours)
    spans = [utc_span(query)] + ([utc_span(other)] if other is not None else [])
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)

    async def build() -> Rendered:
        series = await compute(conn, query)
        compared: tuple[str, Series, MetricsQuery] | None = None
        if other is not None and opts.compare is not None:
            compared = (opts.compare, await compute(conn, other), other)
        return rendered(answer_document(series, query, single=single, comparison=compared, currency=opts.currency))

    if "no-cache" in request.headers.get("Cache-Control", ""):
        answer = await build()
    else:
        key = (org_id, tuple(s.id for s in sites), _wall_key(start), _wall_key(end), opts, single)
        scope = Scope(org_id, frozenset(s.id for s in sites), lo, hi)
        answer = await state.cache.get(key, scope, build)
    return answer, hi


def _wall_key(wall: datetime) -> tuple[str, int]:
    return wall.isoformat(), wall.fold

