"""Sites, their sensors and outages, and the organization's settings, for analysts; managing them for fleet admins.

Readers (analyst or fleet_admin keys):
- `GET /v1/organization`: the key's organization and its week start;
- `GET /v1/sites[?tag=]`, `GET /v1/sites/{site}`: sites with their settings (collector/sitesettings.py);
- `GET /v1/sites/{site}/sensors`: the sensors learnt from the data, expected or retired;
- `GET /v1/sites/{site}/outages`: buffer gaps and offline periods agents reported.
Fleet admins:
- `POST /v1/admin/sites`, `PATCH /v1/admin/sites/{site}`: create a site, change its settings;
- `PATCH /v1/admin/sites/{site}/sensors/{sensor}`: retire a sensor (`{"retired_at": "now"}`) or bring it back (null);
- `PATCH /v1/admin/organization`: the week start.
Lists are paginated (collector/api/pages.py). Everything runs under the key's organization
(collector/tenancy.py); another organization's site is 404, like one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import admin, sites
from ..errors import AdminError, BadRequest, Conflict, NotFound
from ..http import json_object, shown
from ..localtime import parse_bound
from ..periods import WEEKDAYS
from ..sitesettings import SensorInfo, SettingsError
from ..tenancy import Conn, KeyScope, keyed
from .pages import next_cursor, page_params
from .params import DATETIME_PATTERN, INSTANT_PATTERN, PAGE, TAG_LIST_PATTERN, QueryParam, matches

READERS = ("analyst", "fleet_admin")
ADMIN = "fleet_admin"
LIST_SITES_QUERY = (
    QueryParam("tag", {"type": "string", "pattern": TAG_LIST_PATTERN},
               "only sites having every one of these comma-separated tags", repeatable=True),
    *PAGE,
)
_OUTAGE_BOUND = {"type": "string", "pattern": INSTANT_PATTERN}
OUTAGES_QUERY = (
    QueryParam("from", _OUTAGE_BOUND, "only outages ending at or after: a local date or an ISO datetime with offset",
               code="bad_date"),
    QueryParam("to", _OUTAGE_BOUND, "only outages starting before: a local date or an ISO datetime with offset",
               code="bad_date"),
    *PAGE,
)


def sensor_json(sensor: SensorInfo, expected: list[str] | None) -> dict[str, Any]:
    """A sensor as the API shows it; `expected` says whether it counts towards completeness now."""
    return {
        "name": sensor.name,
        "counts": sensor.counts,
        "occupancy": sensor.occupancy,
        "reporting_since": sensor.reporting_since.isoformat(),
        "last_report_at": sensor.last_report_at.isoformat(),
        "retired_at": sensor.retired_at.isoformat() if sensor.retired_at else None,
        "expected": sensor.name in expected if expected is not None else sensor.retired_at is None,
    }


@keyed(*READERS)
async def organization_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/organization`."""
    async with scope.connection() as conn:
        return web.json_response(await _organization(conn, scope.org_id))


@keyed(ADMIN)
async def organization_update_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`PATCH /v1/admin/organization` with `{"week_start": "sunday"}`."""
    await scope.principal()
    body = await json_object(request)
    unknown = sorted(set(body) - {"week_start"})
    if unknown or "week_start" not in body:
        raise BadRequest("send {\"week_start\": \"monday\" ... \"sunday\"}", code="bad_settings")
    value = body["week_start"]
    if value not in WEEKDAYS:
        raise BadRequest(f"week_start must be one of {', '.join(WEEKDAYS)}, got {value!r}", code="bad_settings")
    async with scope.connection() as conn:
        await sites.set_week_start(conn, scope.org_id, WEEKDAYS.index(value) + 1)
        return web.json_response(await _organization(conn, scope.org_id))


async def _organization(conn: Conn, org_id: str) -> dict[str, Any]:
    cur = await conn.execute("SELECT id, name, week_start FROM organizations WHERE id = %s", (org_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("this key's organization no longer exists")
    return {"id": row[0], "name": row[1], "week_start": WEEKDAYS[row[2] - 1]}


@keyed(*READERS, query=LIST_SITES_QUERY)
async def list_sites_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/sites[?tag=a,b][&limit=&cursor=]`."""
    tags = tuple(t.strip() for v in request.query.getall("tag", []) for t in v.split(",") if t.strip())
    async with scope.connection() as conn:
        limit, after = page_params(request.query, str)
        found = await sites.list_sites(conn, scope.org_id, after=after or "", limit=limit, tags=tags)
    return web.json_response({
        "sites": [s.as_json() for s in found],
        "next_cursor": next_cursor(found, limit, found[-1].id if found else None),
    })


@keyed(*READERS)
async def site_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/sites/{site}`."""
    async with scope.connection() as conn:
        record = await _site(conn, scope.org_id, request.match_info["site"])
    return web.json_response(record.as_json())


@keyed(*READERS, query=PAGE)
async def sensors_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/sites/{site}/sensors`."""
    async with scope.connection() as conn:
        limit, after = page_params(request.query, str)
        record = await _site(conn, scope.org_id, request.match_info["site"])
        found = await sites.list_sensors(conn, scope.org_id, record.id, after=after or "", limit=limit)
    return web.json_response({
        "sensors": [sensor_json(s, record.expected_sensors) for s in found],
        "expected_sensors": record.expected_sensors,
        "next_cursor": next_cursor(found, limit, found[-1].name if found else None),
    })


@keyed(*READERS, query=OUTAGES_QUERY)
async def outages_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/sites/{site}/outages[?from=&to=]`: newest first."""
    async with scope.connection() as conn:
        limit, after = page_params(request.query, int)
        record = await _site(conn, scope.org_id, request.match_info["site"])
        zone = record.info().zone
        bounds: dict[str, datetime | None] = {"from": None, "to": None}
        for name in bounds:
            if request.query.get(name):
                try:
                    bounds[name] = parse_bound(request.query[name], zone)
                except ValueError as exc:
                    raise BadRequest(f"`{name}`: {exc}", code="bad_date") from None
        cur = await conn.execute(
            "SELECT id, kind, sensor, agent_id, starts_at, ends_at, lost_first, lost_last, detail FROM outages "
            "WHERE org_id = %(org)s AND site_id = %(site)s AND (%(after)s::bigint IS NULL OR id < %(after)s) "
            "AND (%(to)s::timestamptz IS NULL OR starts_at < %(to)s) "
            "AND (%(from)s::timestamptz IS NULL OR ends_at IS NULL OR ends_at >= %(from)s) "
            "ORDER BY id DESC LIMIT %(limit)s",
            {"org": scope.org_id, "site": record.id, "after": after, "limit": limit, **bounds},
        )
        rows = await cur.fetchall()
    outages = [
        {
            "id": r[0], "kind": r[1], "sensor": r[2], "agent": r[3], "starts_at": r[4].isoformat(),
            "ends_at": r[5].isoformat() if r[5] else None, "lost_first": r[6], "lost_last": r[7], "detail": r[8],
        }
        for r in rows
    ]
    cursor = next_cursor(rows, limit, rows[-1][0] if rows else None)
    return web.json_response({"outages": outages, "next_cursor": cursor})


@keyed(ADMIN)
async def create_site_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/sites` with `{"id", "timezone", "name"?, ...settings}`: 201 with the site."""
    await scope.principal()
    body = await json_object(request)
    site_id, timezone = body.pop("id", None), body.get("timezone")
    if not isinstance(site_id, str) or not isinstance(timezone, str):
        raise BadRequest("send at least {\"id\": \"paris-01\", \"timezone\": \"Europe/Paris\"}", code="bad_settings")
    async with scope.connection() as conn:
        if await sites.get_site(conn, scope.org_id, site_id) is not None:
            raise Conflict(f"this organization already has a site {site_id!r}", code="site_exists")
        try:
            sites.check_changes(body)
            await admin.create_site(conn, scope.org_id, site_id, timezone, body.get("name"))
            record = await sites.update_site(conn, scope.org_id, site_id, body)
        except SettingsError as exc:
            raise BadRequest("; ".join(exc.problems), code="bad_settings") from None
        except AdminError as exc:
            raise BadRequest(str(exc), code="bad_settings") from None
    return web.json_response(record.as_json(), status=201)


@keyed(ADMIN)
async def update_site_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`PATCH /v1/admin/sites/{site}` with the settings to change."""
    await scope.principal()
    body = await json_object(request)
    async with scope.connection() as conn:
        record = await _site(conn, scope.org_id, request.match_info["site"])
        try:
            record = await sites.update_site(conn, scope.org_id, record.id, body)
        except SettingsError as exc:
            raise BadRequest("; ".join(exc.problems), code="bad_settings") from None
        except sites.TimezoneLocked as exc:
            raise Conflict(str(exc), code="timezone_locked") from None
        except AdminError as exc:
            raise BadRequest(str(exc), code="bad_settings") from None
    return web.json_response(record.as_json())


@keyed(ADMIN)
async def update_sensor_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`PATCH /v1/admin/sites/{site}/sensors/{sensor}` with `{"retired_at": "now" | ISO datetime | null}`."""
    await scope.principal()
    body = await json_object(request)
    if set(body) != {"retired_at"}:
        raise BadRequest("send {\"retired_at\": \"now\"}, an ISO datetime with offset, or null", code="bad_settings")
    value = body["retired_at"]
    at: datetime | None
    if value is None:
        at = None
    elif value == "now":
        at = datetime.now(UTC)
    elif isinstance(value, str) and matches(DATETIME_PATTERN, value):
        at = datetime.fromisoformat(value)
    else:
        raise BadRequest(
            f"retired_at must be \"now\", an ISO datetime with offset (years 1970-2099) or null, got {shown(value)}",
            code="bad_settings",
        )
    async with scope.connection() as conn:
        record = await _site(conn, scope.org_id, request.match_info["site"])
        try:
            sensor = await sites.retire_sensor(conn, scope.org_id, record.id, request.match_info["sensor"], at)
        except AdminError as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(sensor_json(sensor, record.expected_sensors))


async def _site(conn: Conn, org_id: str, site_id: str) -> sites.SiteRecord:
    record = await sites.get_site(conn, org_id, site_id)
    if record is None:
        raise NotFound(f"no site {site_id!r} in this key's organization")
    return record
