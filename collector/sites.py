"""Sites and their settings in the database: loading them for answers, changing them (admin API and CLI).

Settings are checked by collector/sitesettings.py, every problem at once. A change sends the same
cache notice as ingest (collector/cache.py), in its transaction, so every collector drops the
answers of the site at commit. Two changes touch stored data:
- `day_reset` replays the site's estimated occupancy over all its days (footfall_refresh_balance);
- `timezone` is refused once the site has data: its local days were computed in the old zone at
  ingest. Create a new site for the corrected zone instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from . import balance, cache
from .admin import check_timezone
from .errors import AdminError
from .sitesettings import (
    SensorInfo,
    SettingsError,
    SiteInfo,
    check_day_reset,
    check_expected_sensors,
    check_tags,
    check_visitors,
    hours_json,
    parse_opening_hours,
)

Conn = psycopg.AsyncConnection[Any]
EDITABLE = ("name", "timezone", "visitors", "day_reset", "tags", "opening_hours", "hours_exceptions",
            "expected_sensors")
_COLUMNS = ("org_id, id, name, timezone, visitors, day_reset, tags, opening_hours, hours_exceptions, "
            "expected_sensors, created_at, updated_at")


class TimezoneLocked(AdminError):
    """The site has data whose local days were computed in its current zone."""


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """A site as stored, with its settings."""

    org_id: str
    id: str
    name: str
    timezone: str
    visitors: str
    day_reset: time
    tags: list[str]
    opening_hours: dict[str, Any] | None
    hours_exceptions: dict[str, Any]
    expected_sensors: list[str] | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The API's view of the site."""
        return {
            "id": self.id,
            "name": self.name,
            "timezone": self.timezone,
            "visitors": self.visitors,
            "day_reset": self.day_reset.strftime("%H:%M"),
            "tags": list(self.tags),
            "opening_hours": self.opening_hours,
            "hours_exceptions": self.hours_exceptions,
            "expected_sensors": self.expected_sensors,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def info(self, sensors: tuple[SensorInfo, ...] = ()) -> SiteInfo:
        """What a metrics answer needs."""
        hours = parse_opening_hours(self.opening_hours, self.hours_exceptions)
        return SiteInfo(
            self.org_id, self.id, self.name, ZoneInfo(self.timezone), self.visitors, self.day_reset,
            tuple(self.tags), hours, tuple(self.expected_sensors) if self.expected_sensors is not None else None,
            sensors,
        )


def _record(row: tuple[Any, ...]) -> SiteRecord:
    org_id, site_id, name, timezone, visitors, day_reset = row[:6]
    return SiteRecord(org_id, site_id, name, timezone, visitors, day_reset, list(row[6]), row[7], row[8] or {},
                      list(row[9]) if row[9] is not None else None, row[10], row[11])


async def get_site(conn: Conn, org_id: str, site_id: str) -> SiteRecord | None:
    """One site of `org_id`, or None."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM sites WHERE org_id = %s AND id = %s", (org_id, site_id))
    row = await cur.fetchone()
    return _record(row) if row else None


async def list_sites(
    conn: Conn, org_id: str, *, after: str = "", limit: int = 1000, tags: tuple[str, ...] = ()
) -> list[SiteRecord]:
    """Sites of `org_id` by id, after the id `after`, having every tag of `tags`."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM sites WHERE org_id = %s AND id > %s AND tags @> %s::text[] ORDER BY id LIMIT %s",
        (org_id, after, list(tags), limit),
    )
    return [_record(r) for r in await cur.fetchall()]


async def load_sites(conn: Conn, org_id: str, site_ids: list[str] | None, tags: tuple[str, ...] = ()) -> list[SiteInfo]:
    """SiteInfo (with sensors) for the named sites, or every site having `tags`; in id order."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM sites WHERE org_id = %s AND (%s::text[] IS NULL OR id = ANY(%s)) "
        "AND tags @> %s::text[] ORDER BY id",
        (org_id, site_ids, site_ids, list(tags)),
    )
    records = [_record(r) for r in await cur.fetchall()]
    sensors: dict[str, list[SensorInfo]] = {}
    if records:
        cur = await conn.execute(
            "SELECT site_id, sensor, counts, occupancy, reporting_since, last_report_at, retired_at FROM site_sensors "
            "WHERE org_id = %s AND site_id = ANY(%s) ORDER BY site_id, sensor",
            (org_id, [r.id for r in records]),
        )
        for site_id, *fields in await cur.fetchall():
            sensors.setdefault(site_id, []).append(SensorInfo(*fields))
    return [r.info(tuple(sensors.get(r.id, ()))) for r in records]


async def list_sensors(
    conn: Conn, org_id: str, site_id: str, *, after: str = "", limit: int = 1000
) -> list[SensorInfo]:
    """The sensors learnt for a site, by name."""
    cur = await conn.execute(
        "SELECT sensor, counts, occupancy, reporting_since, last_report_at, retired_at FROM site_sensors "
        "WHERE org_id = %s AND site_id = %s AND sensor > %s ORDER BY sensor LIMIT %s",
        (org_id, site_id, after, limit),
    )
    return [SensorInfo(*r) for r in await cur.fetchall()]


def check_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Column values from a settings change; SettingsError listing every problem."""
    problems: list[str] = []
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        problems.append(f"unknown settings {unknown}; editable: {', '.join(EDITABLE)}")
    values: dict[str, Any] = {}
    checks = {
        "visitors": check_visitors, "day_reset": check_day_reset, "tags": check_tags,
        "expected_sensors": check_expected_sensors,
    }
    for name, check in checks.items():
        if name in changes:
            try:
                values[name] = check(changes[name])
            except SettingsError as exc:
                problems += exc.problems
    if "opening_hours" in changes or "hours_exceptions" in changes:
        try:  # each on its own here; update_site checks them again together with the stored ones
            parse_opening_hours(changes.get("opening_hours") or {}, changes.get("hours_exceptions", {}))
        except SettingsError as exc:
            problems += exc.problems
    if "name" in changes:
        name = changes["name"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
            problems.append("name: must be 1-200 characters")
        else:
            values["name"] = name.strip()
    if "timezone" in changes:
        zone = changes["timezone"]
        try:
            if not isinstance(zone, str):
                raise AdminError(f"must be an IANA zone name such as Europe/Paris, got {zone!r}")
            values["timezone"] = check_timezone(zone).key
        except AdminError as exc:
            problems.append(f"timezone: {exc}")
    if problems:
        raise SettingsError(problems)
    return values


async def update_site(conn: Conn, org_id: str, site_id: str, changes: dict[str, Any]) -> SiteRecord:
    """Apply checked setting changes to a site, in one transaction; SettingsError, AdminError or TimezoneLocked."""
    values = check_changes(changes)
    async with conn.transaction():
        current = await get_site(conn, org_id, site_id)
        if current is None:
            raise AdminError(f"no site {site_id!r} in organization {org_id!r}")
        if "opening_hours" in changes or "hours_exceptions" in changes:
            weekly = changes.get("opening_hours", current.opening_hours)
            exceptions = changes.get("hours_exceptions", current.hours_exceptions)
            weekly, exceptions = hours_json(parse_opening_hours(weekly, exceptions))
            values["opening_hours"] = Jsonb(weekly) if weekly is not None else None
            values["hours_exceptions"] = Jsonb(exceptions)
        if values.get("timezone", current.timezone) != current.timezone and await _has_data(conn, org_id, site_id):
            raise TimezoneLocked(
                f"site {site_id!r} has data whose local days were computed in {current.timezone}; "
                "its zone cannot change. Create a new site for the other zone"
            )
        if values:
            assignments = ", ".join(f"{column} = %({column})s" for column in values)
            await conn.execute(
                f"UPDATE sites SET {assignments}, updated_at = now() WHERE org_id = %(org)s AND id = %(site)s",
                {**values, "org": org_id, "site": site_id},
            )
        if "day_reset" in values and values["day_reset"] != current.day_reset:
            await replay_balance(conn, org_id, site_id, ZoneInfo(current.timezone), values["day_reset"])
        await conn.execute("SELECT pg_notify(%s, %s)", (cache.CHANNEL, cache.notice(org_id, site_id, None)))
        updated = await get_site(conn, org_id, site_id)
    assert updated is not None
    return updated


async def replay_balance(conn: Conn, org_id: str, site_id: str, zone: ZoneInfo, reset: time) -> None:
    """Recompute the estimated occupancy of every day of the site that has counts."""
    cur = await conn.execute(
        "SELECT min(local_day), max(local_day) FROM counts_day WHERE org_id = %s AND site_id = %s", (org_id, site_id)
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return
    first: date = row[0]
    last: date = row[1]
    edges = [balance.day_start(first, zone), balance.day_start(last + timedelta(days=1), zone) - balance.QUARTER]
    refresh = balance.refresh_for(edges, reset, zone)
    assert refresh is not None
    await conn.execute(
        "SELECT footfall_refresh_balance(%s, %s, %s::timestamptz[], %s::date[], %s::timestamptz[])",
        (org_id, site_id, refresh.resets, refresh.days, refresh.day_starts),
    )


async def _has_data(conn: Conn, org_id: str, site_id: str) -> bool:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM counts_day WHERE org_id = %(o)s AND site_id = %(s)s) "
        "OR EXISTS (SELECT 1 FROM sales_day WHERE org_id = %(o)s AND site_id = %(s)s) "
        "OR EXISTS (SELECT 1 FROM site_sensors WHERE org_id = %(o)s AND site_id = %(s)s)",
        {"o": org_id, "s": site_id},
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def retire_sensor(conn: Conn, org_id: str, site_id: str, sensor: str, at: datetime | None) -> SensorInfo:
    """Set (or with None, clear) when a learnt sensor stopped being expected."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE site_sensors SET retired_at = %s WHERE org_id = %s AND site_id = %s AND sensor = %s "
            "RETURNING sensor, counts, occupancy, reporting_since, last_report_at, retired_at",
            (at, org_id, site_id, sensor),
        )
        row = await cur.fetchone()
        if row is None:
            raise AdminError(f"site {site_id!r} has no sensor {sensor!r}")
        await conn.execute("SELECT pg_notify(%s, %s)", (cache.CHANNEL, cache.notice(org_id, site_id, None)))
    return SensorInfo(*row)


async def set_week_start(conn: Conn, org_id: str, week_start: int) -> None:
    """The organization's first day of the week (ISO weekday, 1 = Monday)."""
    if not 1 <= week_start <= 7:
        raise AdminError(f"week start must be an ISO weekday from 1 (Monday) to 7 (Sunday), got {week_start}")
    async with conn.transaction():
        cur = await conn.execute("UPDATE organizations SET week_start = %s WHERE id = %s", (week_start, org_id))
        if cur.rowcount == 0:
            raise AdminError(f"no organization {org_id!r}")
        await conn.execute("SELECT pg_notify(%s, %s)", (cache.CHANNEL, cache.notice(org_id, None, None)))


async def week_start_of(conn: Conn, org_id: str) -> int:
    """The organization's week start (1 when it cannot be read)."""
    cur = await conn.execute("SELECT week_start FROM organizations WHERE id = %s", (org_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else 1

