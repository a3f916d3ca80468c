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
from ..localtime import MAX_YEAR, MIN_YEAR, check_year, parse_bound
from ..periods import WEEKDAYS
from ..sitesettings import SensorInfo, SettingsError
from ..state import STATE
from ..tenancy import tenant_connection
from .auth import authenticate
from .pages import next_cursor, page_params

READERS = ("analyst", "fleet_admin")


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


async def organization_handler(request: web.Request) -> web.Response:
    """`GET /v1/organization`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, *READERS)
    async with tenant_connection(state.pool, principal.org_id) as conn:
        cur = await conn.execute("SELECT id, name, week_start FROM organizations WHERE id = %s", (principal.org_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound("this key's organization no longer exists")
    return web.json_response({"id": row[0], "name": row[1], "week_start": WEEKDAYS[row[2] - 1]})


async def organization_update_handler(request: web.Request) -> web.Response:
    """`PATCH /v1/admin/organization` with `{"week_start": "sunday"}`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, "fleet_admin")
    body = await json_object(request)
    unknown = sorted(set(body) - {"week_start"})
    if unknown or "week_start" not in body:
        raise BadRequest("send {\"week_start\": \"monday\" ... \"sunday\"}", code="bad_settings")
    value = body["week_start"]
    if value not in WEEKDAYS:
        raise BadRequest(f"week_start must be one of {', '.join(WEEKDAYS)}, got {value!r}", code="bad_settings")
    async with tenant_connection(state.pool, principal.org_id) as conn:
        await sites.set_week_start(conn, principal.org_id, WEEKDAYS.index(value) + 1)
    return await organization_handler(request)


async def list_sites_handler(request: web.Request) -> web.Response:
    """`GET /v1/sites[?tag=a,b][&limit=&cursor=]`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, *READERS)
    limit, after = page_params(request.query, str)
    tags = tuple(t.strip() for v in request.query.getall("tag", []) for t in v.split(",") if t.strip())
    async with tenant_connection(state.pool, principal.org_id) as conn:
        found = await sites.list_sites(conn, principal.org_id, after=after or "", limit=limit, tags=tags)
    return web.json_response({
        "sites": [s.as_json() for s in found],
        "next_cursor": next_cursor(found, limit, found[-1].id if found else None),
    })


async def site_handler(request: web.Request) -> web.Response:
    """`GET /v1/sites/{site}`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, *READERS)
    async with tenant_connection(state.pool, principal.org_id) as conn:
        record = await _site(conn, principal.org_id, request.match_info["site"])
    return web.json_response(record.as_json())


async def sensors_handler(request: web.Request) -> web.Response:
    """`GET /v1/sites/{site}/sensors`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, *READERS)
    limit, after = page_params(request.query, str)
    async with tenant_connection(state.pool, principal.org_id) as conn:
        record = await _site(conn, principal.org_id, request.match_info["site"])
        found = await sites.list_sensors(conn, principal.org_id, record.id, after=after or "", limit=limit)
    return web.json_response({
        "sensors": [sensor_json(s, record.expected_sensors) for s in found],
        "expected_sensors": record.expected_sensors,
        "next_cursor": next_cursor(found, limit, found[-1].name if found else None),
    })


async def outages_handler(request: web.Request) -> web.Response:
    """`GET /v1/sites/{site}/outages[?from=&to=]`: newest first."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, *READERS)
    limit, after = page_params(request.query, int)
    async with tenant_connection(state.pool, principal.org_id) as conn:
        record = await _site(conn, principal.org_id, request.match_info["site"])
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
            {"org": principal.org_id, "site": record.id, "after": after, "limit": limit, **bounds},
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


async def create_site_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/sites` with `{"id", "timezone", "name"?, ...settings}`: 201 with the site."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, "fleet_admin")
    body = await json_object(request)
    site_id, timezone = body.pop("id", None), body.get("timezone")
    if not isinstance(site_id, str) or not isinstance(timezone, str):
        raise BadRequest("send at least {\"id\": \"paris-01\", \"timezone\": \"Europe/Paris\"}", code="bad_settings")
    async with tenant_connection(state.pool, principal.org_id) as conn:
        if await sites.get_site(conn, principal.org_id, site_id) is not None:
            raise Conflict(f"this organization already has a site {site_id!r}", code="site_exists")
        try:
            sites.check_changes(body)
            await admin.create_site(conn, principal.org_id, site_id, timezone, body.get("name"))
            record = await sites.update_site(conn, principal.org_id, site_id, body)
        except SettingsError as exc:
            raise BadRequest("; ".join(exc.problems), code="bad_settings") from None
        except AdminError as exc:
            raise BadRequest(str(exc), code="bad_settings") from None
    return web.json_response(record.as_json(), status=201)


async def update_site_handler(request: web.Request) -> web.Response:
    """`PATCH /v1/admin/sites/{site}` with the settings to change."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, "fleet_admin")
    body = await json_object(request)
    async with tenant_connection(state.pool, principal.org_id) as conn:
        record = await _site(conn, principal.org_id, request.match_info["site"])
        try:
            record = await sites.update_site(conn, principal.org_id, record.id, body)
        except SettingsError as exc:
            raise BadRequest("; ".join(exc.problems), code="bad_settings") from None
        except sites.TimezoneLocked as exc:
            raise Conflict(str(exc), code="timezone_locked") from None
        except AdminError as exc:
            raise BadRequest(str(exc), code="bad_settings") from None
    return web.json_response(record.as_json())


async def update_sensor_handler(request: web.Request) -> web.Response:
    """`PATCH /v1/admin/sites/{site}/sensors/{sensor}` with `{"retired_at": "now" | ISO datetime | null}`."""
    state = request.app[STATE]
    principal = await authenticate(request, state.pool, "fleet_admin")
    body = await json_object(request)
    if set(body) != {"retired_at"}:
        raise BadRequest("send {\"retired_at\": \"now\"}, an ISO datetime with offset, or null", code="bad_settings")
    value = body["retired_at"]
    at: datetime | None
    if value is None:
        at = None
    elif value == "now":
        at = datetime.now(UTC)
    else:
        try:
            at = datetime.fromisoformat(value) if isinstance(value, str) else None
            if at is not None:
                check_year(at, value)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise BadRequest(f"retired_at must be \"now\", an ISO datetime with offset (years {MIN_YEAR}-{MAX_YEAR}) "
                             f"or null, got {shown(value)}", code="bad_settings")
    async with tenant_connection(state.pool, principal.org_id) as conn:
        record = await _site(conn, principal.org_id, request.match_info["site"])
        try:
            sensor = await sites.retire_sensor(conn, principal.org_id, record.id, request.match_info["sensor"], at)
        except AdminError as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(sensor_json(sensor, record.expected_sensors))


async def _site(conn: Any, org_id: str, site_id: str) -> sites.SiteRecord:
    record = await sites.get_site(conn, org_id, site_id)
    if record is None:
        raise NotFound(f"no site {site_id!r} in this key's organization")
    return record
