"""The fleet in the database: heartbeats, agent states, pushed configurations, key rotation, the agent log.

Plain async functions over a psycopg connection, used by the agent-facing endpoints
(collector/api/fleet_agents.py) and the fleet admin API (collector/api/fleet_admin.py). Every
admin function takes the caller's organization and touches nothing outside it: an agent, token
or configuration of another organization is "not found", exactly like one that does not exist.
Both APIs call them on a connection from the tenancy gate (collector/tenancy.py): inside a
transaction under footfall_api bound to the caller's organization, so row-level security holds
them to it as well, and a function's own `conn.transaction()` is a savepoint within it.

An agent's **state** is computed when it is read, from its last contact (heartbeat or upload,
on the collector's clock) against two thresholds: `online` within `stale`, `stale` until
`offline`, then `offline`; an agent never heard from is `offline`, a revoked one `revoked`.

The configuration an agent should run is that of the newest push whose scope covers it (the
agent itself, its site, or all agents of the organization): a push to all after a push to one
agent wins, and an agent enrolled later into a site gets the site's newest push.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from footfall.protocol.fleet import ConfigDocument, ConfigRef, Heartbeat, config_path, text_sha256
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Conn = psycopg.AsyncConnection[Any]
State = Literal["online", "stale", "offline", "revoked"]
STATES: tuple[State, ...] = ("online", "stale", "offline", "revoked")
Scope = Literal["agent", "site", "all"]
SCOPES: tuple[Scope, ...] = ("agent", "site", "all")
DEFAULT_STALE = timedelta(minutes=15)
DEFAULT_OFFLINE = timedelta(hours=24)
RECENT_EVENTS = 20
LOG_ENTRIES = 50
# The columns `agents list` shows, read in one query.
_AGENT_COLUMNS = """
a.id, a.org_id, a.site_id, a.status, a.version, a.hostname, a.enrolled_at, a.revoked_at, a.last_seen_at,
a.last_heartbeat_at, a.hw_seq, a.clock_skew_s, a.backlog_records, a.backlog_oldest_at, a.sources_total,
a.sources_down, a.disk_free_bytes, a.config_applied_version, a.config_applied_at, a.config_rejected_version,
a.config_error, a.rotate_requested_at, a.key_rotated_at, a.clock_state, a.readings_restamped, a.readings_suspect,
(SELECT c.version FROM config_versions c WHERE c.org_id = a.org_id
   AND ((c.scope = 'agent' AND c.target = a.id) OR (c.scope = 'site' AND c.target = a.site_id) OR c.scope = 'all')
   ORDER BY c.version DESC LIMIT 1) AS config_desired_version
"""


class NotFound(Exception):
    """No such agent, token or configuration in the caller's organization."""


class Refused(Exception):
    """The operation does not apply to this object as it is (a revoked agent, an invalid push)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When an agent stops being online, and when it counts as offline."""

    stale: timedelta = DEFAULT_STALE
    offline: timedelta = DEFAULT_OFFLINE


@dataclass(frozen=True, slots=True)
class FleetAgent:
    """One agent as the fleet list shows it."""

    id: str
    org_id: str
    site_id: str
    status: str
    state: State
    version: str
    hostname: str
    enrolled_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    last_contact_at: datetime | None
    hw_seq: int
    clock_skew_s: float | None
    backlog_records: int | None
    backlog_oldest_at: datetime | None
    sources_total: int | None
    sources_down: int | None
    disk_free_bytes: int | None
    config_desired_version: int
    config_applied_version: int
    config_applied_at: datetime | None
    config_rejected_version: int
    config_error: str
    config_state: str
    rotate_requested_at: datetime | None
    key_rotated_at: datetime | None
    # The agent's clock as ingest judged it and the readings it re-stamped or flagged (migration 0015).
    clock_state: str = "unknown"
    readings_restamped: int = 0
    readings_suspect: int = 0

    def as_json(self, now: datetime) -> dict[str, Any]:
        """JSON-ready, with ages in seconds beside the times (`last_seen` is the last contact of any kind)."""
        out = {k: _jsonable(v) for k, v in asdict(self).items()}
        out["site"] = self.site_id
        out["last_seen"] = out["last_contact_at"]
        out["last_upload_at"] = out.pop("last_seen_at")
        out["last_seen_age_s"] = _age(self.last_contact_at, now)
        out["backlog_oldest_age_s"] = _age(self.backlog_oldest_at, now)
        return out


@dataclass(frozen=True, slots=True)
class AgentQuery:
    """Filters and order of `agents list`."""

    site: str | None = None
    states: frozenset[str] = frozenset()
    version: str | None = None
    sort: str = "site"
    descending: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)


# Sort keys of `agents list` -> the value sorted on (None sorts last whatever the direction).
SORT_KEYS: dict[str, Any] = {
    "id": lambda a: a.id,
    "site": lambda a: (a.site_id, a.id),
    "state": lambda a: (STATES.index(a.state), a.site_id, a.id),
    "last-seen": lambda a: a.last_contact_at,
    "backlog": lambda a: a.backlog_records,
    "oldest": lambda a: a.backlog_oldest_at,
    "skew": lambda a: abs(a.clock_skew_s) if a.clock_skew_s is not None else None,
    "version": lambda a: a.version,
    "sources-down": lambda a: a.sources_down,
    "config": lambda a: a.config_applied_version,
}


def compute_state(status: str, last_contact: datetime | None, now: datetime, thresholds: Thresholds) -> State:
    """online / stale / offline / revoked, from the last contact (see the module docstring)."""
    if status != "active":
        return "revoked"
    if last_contact is None:
        return "offline"
    silence = now - last_contact
    if silence <= thresholds.stale:
        return "online"
    if silence <= thresholds.offline:
        return "stale"
    return "offline"


def config_state(desired: int, applied: int, rejected: int) -> str:
    """`none` (nothing pushed), `current`, `rejected` (it refused the desired version) or `pending`."""
    if not desired:
        return "none"
    if applied == desired:
        return "current"
    if rejected == desired:
        return "rejected"
    return "pending"


def _agent(row: dict[str, Any], now: datetime, thresholds: Thresholds) -> FleetAgent:
    contacts = [t for t in (row["last_heartbeat_at"], row["last_seen_at"]) if t is not None]
    last_contact = max(contacts) if contacts else None
    desired = row.pop("config_desired_version") or 0
    return FleetAgent(
        **row,
        state=compute_state(row["status"], last_contact, now, thresholds),
        last_contact_at=last_contact,
        config_desired_version=desired,
        config_state=config_state(desired, row["config_applied_version"], row["config_rejected_version"]),
    )


async def now_utc(conn: Conn) -> datetime:
    """The database's clock: every collector process then agrees on ages and states."""
    row = await (await conn.execute("SELECT now()")).fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


async def list_fleet(conn: Conn, org_id: str, query: AgentQuery) -> tuple[datetime, list[FleetAgent]]:
    """The organization's agents, filtered and sorted; with the time their states were computed at."""
    now = await now_utc(conn)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_AGENT_COLUMNS} FROM agents a WHERE a.org_id = %(org)s "
            "AND (%(site)s::text IS NULL OR a.site_id = %(site)s) "
            "AND (%(version)s::text IS NULL OR a.version = %(version)s)",
            {"org": org_id, "site": query.site, "version": query.version},
        )
        rows = await cur.fetchall()
    agents = [_agent(dict(row), now, query.thresholds) for row in rows]
    if query.states:
        agents = [a for a in agents if a.state in query.states]
    key = SORT_KEYS[query.sort]
    present = sorted((a for a in agents if key(a) is not None), key=key, reverse=query.descending)
    return now, present + sorted((a for a in agents if key(a) is None), key=lambda a: (a.site_id, a.id))


async def get_agent(conn: Conn, org_id: str, agent_id: str, thresholds: Thresholds | None = None) -> FleetAgent:
    """One agent of the organization; NotFound otherwise."""
    now = await now_utc(conn)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_AGENT_COLUMNS} FROM agents a WHERE a.org_id = %s AND a.id = %s", (org_id, agent_id)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no agent {agent_id!r} in this organization")
    return _agent(dict(row), now, thresholds or Thresholds())


async def agent_details(conn: Conn, org_id: str, agent_id: str, thresholds: Thresholds) -> dict[str, Any]:
    """Everything the collector knows of one agent: its row, last heartbeat, sensors, recent gaps and errors, log."""
    agent = await get_agent(conn, org_id, agent_id, thresholds)
    now = await now_utc(conn)
    heartbeat = await _value(conn, "SELECT heartbeat FROM agents WHERE id = %s", (agent_id,))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT kind, name, first_seen_at, last_seen_at FROM sensors WHERE agent_id = %s ORDER BY kind, name",
            (agent_id,),
        )
        sensors = await cur.fetchall()
        await cur.execute(
            "SELECT seq, sensor, at, kind, detail, lost_first, lost_last, received_at FROM sensor_events "
            "WHERE agent_id = %s AND kind IN ('gap', 'error', 'offline', 'counter_reset') "
            "ORDER BY seq DESC LIMIT %s",
            (agent_id, RECENT_EVENTS),
        )
        events = await cur.fetchall()
        await cur.execute(
            "SELECT at, kind, detail FROM agent_log WHERE agent_id = %s ORDER BY at DESC, id DESC LIMIT %s",
            (agent_id, LOG_ENTRIES),
        )
        log = await cur.fetchall()
    return {
        **agent.as_json(now),
        "heartbeat": heartbeat,
        "sensors": [_row_json(s) for s in sensors],
        "recent_gaps": [_row_json(e) for e in events if e["kind"] == "gap"],
        "recent_errors": [_row_json(e) for e in events if e["kind"] != "gap"],
        "log": [_row_json(entry) for entry in log],
    }


async def log_event(conn: Conn, org_id: str, agent_id: str, kind: str, detail: str = "") -> None:
    """Add a line to an agent's fleet log."""
    await conn.execute(
        "INSERT INTO agent_log (org_id, agent_id, kind, detail) VALUES (%s, %s, %s, %s)",
        (org_id, agent_id, kind, detail[:2000]),
    )


async def record_heartbeat(conn: Conn, agent_id: str, org_id: str, heartbeat: Heartbeat, skew_s: float) -> None:
    """Store a heartbeat: the whole document, the list's columns, and log what changed since the last one."""
    async with conn.transaction():
        previous = await _value(conn, "SELECT heartbeat FROM agents WHERE id = %s FOR UPDATE", (agent_id,))
        buffer = heartbeat.buffer
        await conn.execute(
            "UPDATE agents SET last_heartbeat_at = now(), heartbeat = %s, "
            "version = CASE WHEN %s <> '' THEN %s ELSE version END, "
            "hostname = CASE WHEN %s <> '' THEN %s ELSE hostname END, "
            "backlog_records = %s, backlog_oldest_at = CASE WHEN %s > 0 THEN to_timestamp(%s / 1000.0) END, "
            "sources_total = %s, sources_down = %s, disk_free_bytes = %s, clock_skew_s = %s WHERE id = %s",
            (
                Jsonb(heartbeat.as_json()),
                heartbeat.version[:64], heartbeat.version[:64],
                heartbeat.hostname[:255], heartbeat.hostname[:255],
                buffer.depth, buffer.oldest_taken_ms, buffer.oldest_taken_ms,
                len(heartbeat.sources), heartbeat.sources_down, heartbeat.disk_free_bytes, skew_s, agent_id,
            ),
        )
        for kind, detail in _changes(previous, heartbeat):
            await log_event(conn, org_id, agent_id, kind, detail)
        await record_config_state(
            conn, agent_id, org_id, heartbeat.config.applied_version, heartbeat.config.rejected_version,
            heartbeat.config.error,
        )


def _changes(previous: dict[str, Any] | None, now: Heartbeat) -> list[tuple[str, str]]:
    """Log lines for what changed between two heartbeats: sources going down or back, uploads refused."""
    before = {s.get("name"): s for s in (previous or {}).get("sources", []) if isinstance(s, dict)}
    out: list[tuple[str, str]] = []
    for source in now.sources:
        was = before.get(source.name, {}).get("state", "ok")
        if source.state != "ok" and was == "ok":
            out.append(("source_" + source.state, f"{source.name}: {source.last_error or 'no detail'}"))
        elif source.state == "ok" and was != "ok":
            out.append(("source_ok", f"{source.name} is ok again"))
    was_upload = (previous or {}).get("upload", {}).get("state")
    if now.upload.state == "re-enroll" and was_upload != "re-enroll":
        out.append(("upload_refused", now.upload.last_error))
    if previous is None:
        out.append(("first_heartbeat", f"version {now.version}, host {now.hostname}"))
    elif previous.get("started_at_ms") != now.started_at_ms:
        out.append(("restarted", f"version {now.version}"))
    return out


async def record_config_state(
    conn: Conn, agent_id: str, org_id: str, applied: int, rejected: int, error: str
) -> None:
    """Store which configuration the agent runs and the last it refused; log each change once."""
    row = await (
        await conn.execute(
            "SELECT config_applied_version, config_rejected_version, config_error FROM agents WHERE id = %s FOR UPDATE",
            (agent_id,),
        )
    ).fetchone()
    assert row is not None
    if row[0] != applied:
        await conn.execute(
            "UPDATE agents SET config_applied_version = %s, config_applied_at = now() WHERE id = %s",
            (applied, agent_id),
        )
        await log_event(conn, org_id, agent_id, "config_applied", f"now runs configuration {applied}")
    if (row[1], row[2]) != (rejected, error):
        await conn.execute(
            "UPDATE agents SET config_rejected_version = %s, config_error = %s WHERE id = %s",
            (rejected, error[:4000], agent_id),
        )
        if rejected:
            await log_event(conn, org_id, agent_id, "config_rejected", f"configuration {rejected}: {error}")


async def desired_config(conn: Conn, agent_id: str) -> ConfigRef | None:
    """The configuration this agent should run: the newest push covering it, or None."""
    row = await (
        await conn.execute(
            "SELECT c.version, c.sha256 FROM agents a JOIN config_versions c ON c.org_id = a.org_id "
            "AND ((c.scope = 'agent' AND c.target = a.id) OR (c.scope = 'site' AND c.target = a.site_id) "
            "OR c.scope = 'all') WHERE a.id = %s ORDER BY c.version DESC LIMIT 1",
            (agent_id,),
        )
    ).fetchone()
    return ConfigRef(row[0], row[1], config_path(row[0])) if row else None


async def config_for_agent(conn: Conn, agent_id: str, version: int) -> ConfigDocument:
    """Configuration `version` if one of its pushes covered this agent; NotFound otherwise."""
    row = await (
        await conn.execute(
            "SELECT c.body, c.sha256 FROM agents a JOIN config_versions c ON c.org_id = a.org_id "
            "AND ((c.scope = 'agent' AND c.target = a.id) OR (c.scope = 'site' AND c.target = a.site_id) "
            "OR c.scope = 'all') WHERE a.id = %s AND c.version = %s",
            (agent_id, version),
        )
    ).fetchone()
    if row is None:
        raise NotFound(f"configuration {version} was not pushed to this agent")
    return ConfigDocument(version, row[0], row[1])


@dataclass(frozen=True, slots=True)
class Push:
    """A configuration version just created, and the agents it now targets."""

    version: int
    sha256: str
    scope: str
    target: str
    agents: list[str]


async def push_config(conn: Conn, org_id: str, scope: str, target: str, body: str, note: str = "") -> Push:
    """A new configuration version for one agent, one site or all; Refused or NotFound when it cannot be."""
    if scope not in SCOPES:
        raise Refused(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    target = "" if scope == "all" else target
    if scope != "all" and not target:
        raise Refused(f"a push to one {scope} needs its id")
    async with conn.transaction():
        if scope == "agent":
            status = await _value(conn, "SELECT status FROM agents WHERE org_id = %s AND id = %s", (org_id, target))
            if status is None:
                raise NotFound(f"no agent {target!r} in this organization")
            if status != "active":
                raise Refused(f"agent {target!r} is revoked: it can no longer fetch a configuration")
        elif scope == "site" and await _value(
            conn, "SELECT 1 FROM sites WHERE org_id = %s AND id = %s", (org_id, target)
        ) is None:
            raise NotFound(f"no site {target!r} in this organization")
        sha = text_sha256(body)
        version = await _value(
            conn,
            "INSERT INTO config_versions (org_id, body, sha256, scope, target, note) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING version",
            (org_id, body, sha, scope, target, note[:500]),
        )
        rows = await (
            await conn.execute(
                "SELECT id FROM agents WHERE org_id = %s AND status = 'active' "
                "AND (%s = 'all' OR (%s = 'site' AND site_id = %s) OR (%s = 'agent' AND id = %s)) ORDER BY id",
                (org_id, scope, scope, target, scope, target),
            )
        ).fetchall()
        agents = [r[0] for r in rows]
        for agent_id in agents:
            await log_event(conn, org_id, agent_id, "config_pushed", f"configuration {version} ({scope} {target})")
    return Push(version, sha, scope, target, agents)


async def config_document(conn: Conn, org_id: str, version: int) -> dict[str, Any]:
    """A pushed configuration with its metadata; NotFound outside the organization."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT version, sha256, scope, target, note, created_at, body AS config FROM config_versions "
            "WHERE org_id = %s AND version = %s",
            (org_id, version),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no configuration {version} in this organization")
    return _row_json(row)


async def config_status(conn: Conn, org_id: str, thresholds: Thresholds) -> dict[str, Any]:
    """Which agents run which version: per agent, and per version with counts of applied, pending, rejected."""
    now, agents = await list_fleet(conn, org_id, AgentQuery(sort="site", thresholds=thresholds))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT version, sha256, scope, target, note, created_at FROM config_versions WHERE org_id = %s "
            "ORDER BY version DESC LIMIT 50",
            (org_id,),
        )
        versions = [_row_json(v) for v in await cur.fetchall()]
    for entry in versions:
        wanted = [a for a in agents if a.config_desired_version == entry["version"] and a.status == "active"]
        entry["desired_by"] = len(wanted)
        entry["applied"] = sum(1 for a in wanted if a.config_state == "current")
        entry["rejected"] = sum(1 for a in wanted if a.config_state == "rejected")
        entry["pending"] = sum(1 for a in wanted if a.config_state == "pending")
        entry["running"] = sum(1 for a in agents if a.config_applied_version == entry["version"])
    return {
        "versions": versions,
        "agents": [
            {
                "id": a.id,
                "site": a.site_id,
                "state": a.state,
                "desired": a.config_desired_version,
                "applied": a.config_applied_version,
                "config_state": a.config_state,
                "rejected": a.config_rejected_version,
                "error": a.config_error if a.config_rejected_version else "",
                "applied_at": _jsonable(a.config_applied_at),
            }
            for a in agents
        ],
        "now": now.isoformat(),
    }


async def revoke(conn: Conn, org_id: str, agent_id: str) -> bool:
    """Revoke an agent of the organization: its next upload or heartbeat gets 401. False if it already was."""
    async with conn.transaction():
        status = await _value(
            conn, "SELECT status FROM agents WHERE org_id = %s AND id = %s FOR UPDATE", (org_id, agent_id)
        )
        if status is None:
            raise NotFound(f"no agent {agent_id!r} in this organization")
        if status == "revoked":
            return False
        await conn.execute("UPDATE agents SET status = 'revoked', revoked_at = now() WHERE id = %s", (agent_id,))
        await log_event(conn, org_id, agent_id, "revoked", "uploads and heartbeats refused from now on")
    return True


async def request_rotation(conn: Conn, org_id: str, agent_id: str) -> datetime:
    """Flag the agent to rotate its key at its next heartbeat; when it was (first) asked."""
    async with conn.transaction():
        row = await (
            await conn.execute(
                "SELECT status, rotate_requested_at FROM agents WHERE org_id = %s AND id = %s FOR UPDATE",
                (org_id, agent_id),
            )
        ).fetchone()
        if row is None:
            raise NotFound(f"no agent {agent_id!r} in this organization")
        if row[0] != "active":
            raise Refused(f"agent {agent_id!r} is revoked; enroll it again instead")
        if row[1] is not None:
            return row[1]
        at = await _value(
            conn, "UPDATE agents SET rotate_requested_at = now() WHERE id = %s RETURNING rotate_requested_at",
            (agent_id,),
        )
        await log_event(conn, org_id, agent_id, "rotate_requested", "the agent rotates its key at its next heartbeat")
    return at


async def rotate_key(conn: Conn, agent_id: str, org_id: str, old_key: bytes, new_key: bytes) -> None:
    """Replace the agent's public key (the caller verified the request with `old_key` and the new key's proof)."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE agents SET public_key = %s, rotate_requested_at = NULL, key_rotated_at = now() "
            "WHERE id = %s AND public_key = %s AND status = 'active'",
            (new_key, agent_id, old_key),
        )
        if cur.rowcount != 1:
            raise Refused("the agent's key changed meanwhile; sign the rotation with the current key")
        await log_event(conn, org_id, agent_id, "key_rotated", "the previous key is refused from now on")


async def revoke_token(conn: Conn, org_id: str, token_id: int) -> None:
    """Revoke an enrollment token of the organization."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE enrollment_tokens SET revoked = true WHERE id = %s AND org_id = %s", (token_id, org_id)
        )
    if cur.rowcount == 0:
        raise NotFound(f"no enrollment token {token_id} in this organization")


def token_state(revoked: bool, expires_at: datetime, uses_left: int, now: datetime) -> str:
    """active, revoked, expired or used_up."""
    if revoked:
        return "revoked"
    if expires_at <= now:
        return "expired"
    if uses_left <= 0:
        return "used_up"
    return "active"


async def _value(conn: Conn, query: str, params: Sequence[Any]) -> Any:
    row = await (await conn.execute(query.encode(), params)).fetchone()
    return row[0] if row else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes | memoryview):
        return None
    return value


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def _age(moment: datetime | None, now: datetime) -> float | None:
    return round((now - moment).total_seconds(), 1) if moment else None
