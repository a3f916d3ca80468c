"""Administration: organizations, sites, enrollment tokens, API keys and agents.

Plain async functions over a psycopg connection, used by `footfall collector ...` commands, by
the tests and by the demo. Each runs in its own transaction (a savepoint when the caller is
already in one). Problems an operator can fix (an unknown organization, a time zone that does
not exist, a duplicate id) raise AdminError with a message saying so.

Tokens and keys are returned in clear exactly once, by the function that creates them; the
database keeps only their SHA-256 (see credentials.py).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

import psycopg
from psycopg.rows import class_row

from .credentials import digest, display_prefix, new_api_key, new_enrollment_token
from .errors import AdminError

Conn = psycopg.AsyncConnection[Any]
Role = Literal["analyst", "fleet_admin"]
ROLES: tuple[Role, ...] = ("analyst", "fleet_admin")
_ORG_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_SITE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True, slots=True)
class Organization:
    """A tenant: it owns sites, agents and API keys, and sees nothing of any other."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Site:
    """A store, with the IANA zone its local days and hours are computed in."""

    org_id: str
    id: str
    name: str
    timezone: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new enrollment token; `token` is its only appearance in clear."""

    id: int
    token: str
    org_id: str
    site_id: str
    expires_at: datetime
    uses: int


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An enrollment token as listed (the secret itself is not kept)."""

    id: int
    prefix: str
    org_id: str
    site_id: str
    expires_at: datetime
    uses_left: int
    revoked: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new API key; `key` is its only appearance in clear."""

    id: int
    key: str
    org_id: str
    role: str
    name: str


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as listed."""

    id: int
    prefix: str
    org_id: str
    role: str
    name: str
    revoked: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An enrolled agent, as the fleet sees it."""

    id: str
    org_id: str
    site_id: str
    status: str
    version: str
    hostname: str
    enrolled_at: datetime
    last_seen_at: datetime | None
    hw_seq: int
    clock_skew_s: float | None
    # The agent's clock as ingest last judged it (migration 0015): unknown, ok, skewed, restamped or suspect.
    clock_state: str = "unknown"
    readings_restamped: int = 0
    readings_suspect: int = 0


def slugify(name: str) -> str:
    """An id from a display name: `Café Müller GmbH` -> `cafe-muller-gmbh`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63]


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name; AdminError when the zone database has no such zone."""
    if name not in _zones():
        close = difflib.get_close_matches(name, _zones(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else "; use a name such as Europe/Paris or America/New_York"
        raise AdminError(f"unknown IANA time zone {name!r}{hint}")
    return ZoneInfo(name)


async def create_organization(conn: Conn, name: str, org_id: str | None = None) -> Organization:
    """A new organization; its id defaults to the slug of its name."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AdminError("an organization's name must be 1-200 characters")
    org_id = org_id if org_id is not None else slugify(name)
    if not _ORG_ID.fullmatch(org_id):
        raise AdminError(
            f"organization id {org_id!r} is invalid: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    try:
        async with conn.transaction(), conn.cursor(row_factory=class_row(Organization)) as cur:
            await cur.execute(
                "INSERT INTO organizations (id, name) VALUES (%s, %s) RETURNING id, name, created_at", (org_id, name)
            )
            return _one(await cur.fetchone())
    except psycopg.errors.UniqueViolation:
        raise AdminError(f"organization {org_id!r} already exists") from None


async def list_organizations(conn: Conn) -> list[Organization]:
    """Every organization, by id."""
    async with conn.cursor(row_factory=class_row(Organization)) as cur:
        await cur.execute("SELECT id, name, created_at FROM organizations ORDER BY id")
        return await cur.fetchall()


async def create_site(conn: Conn, org_id: str, site_id: str, timezone: str, name: str | None = None) -> Site:
    """A new site of `org_id` in the IANA zone `timezone`; its name defaults to its id."""
    if not _SITE_ID.fullmatch(site_id):
        raise AdminError(
            f"site id {site_id!r} is invalid: use 1-63 lowercase letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    check_timezone(timezone)
    name = (name or site_id).strip()
    await _require_org(conn, org_id)
    try:
        async with conn.transaction(), conn.cursor(row_factory=class_row(Site)) as cur:
            await cur.execute(
                "INSERT INTO sites (org_id, id, name, timezone) VALUES (%s, %s, %s, %s) "
                "RETURNING org_id, id, name, timezone, created_at",
                (org_id, site_id, name, timezone),
            )
            return _one(await cur.fetchone())
    except psycopg.errors.UniqueViolation:
        raise AdminError(f"organization {org_id!r} already has a site {site_id!r}") from None


async def list_sites(conn: Conn, org_id: str | None = None) -> list[Site]:
    """The sites of one organization, or of all."""
    async with conn.cursor(row_factory=class_row(Site)) as cur:
        await cur.execute(
            "SELECT org_id, id, name, timezone, created_at FROM sites "
            "WHERE %(org)s::text IS NULL OR org_id = %(org)s ORDER BY org_id, id",
            {"org": org_id},
        )
        return await cur.fetchall()


async def resolve_site(conn: Conn, site_id: str, org_id: str | None = None) -> Site:
    """The site `site_id`; without `org_id` the id must be unique across organizations."""
    sites = [s for s in await list_sites(conn, org_id) if s.id == site_id]
    if not sites:
        where = f" in organization {org_id!r}" if org_id else ""
        raise AdminError(f"no site {site_id!r}{where}; create it with `footfall collector sites create`")
    if len(sites) > 1:
        orgs = ", ".join(s.org_id for s in sites)
        raise AdminError(f"site {site_id!r} exists in several organizations ({orgs}): say which with --org")
    return sites[0]


async def create_enrollment_token(
    conn: Conn,
    site_id: str,
    *,
    org_id: str | None = None,
    expires: timedelta = timedelta(hours=24),
    uses: int = 1,
) -> IssuedToken:
    """A token that enrolls up to `uses` agents into the site until `expires` from now."""
    if uses < 1:
        raise AdminError(f"a token needs at least one use, got {uses}")
    if expires <= timedelta(0):
        raise AdminError("a token's lifetime must be positive")
    site = await resolve_site(conn, site_id, org_id)
    token = new_enrollment_token()
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO enrollment_tokens (org_id, site_id, token_hash, prefix, expires_at, uses_left) "
            "VALUES (%s, %s, %s, %s, now() + %s, %s) RETURNING id, expires_at",
            (site.org_id, site.id, digest(token), display_prefix(token), expires, uses),
        )
        token_id, expires_at = _one(await cur.fetchone())
    return IssuedToken(token_id, token, site.org_id, site.id, expires_at, uses)


async def list_enrollment_tokens(conn: Conn, org_id: str | None = None) -> list[TokenInfo]:
    """Enrollment tokens, newest first."""
    async with conn.cursor(row_factory=class_row(TokenInfo)) as cur:
        await cur.execute(
            "SELECT id, prefix, org_id, site_id, expires_at, uses_left, revoked, created_at FROM enrollment_tokens "
            "WHERE %(org)s::text IS NULL OR org_id = %(org)s ORDER BY id DESC",
            {"org": org_id},
        )
        return await cur.fetchall()


async def revoke_enrollment_token(conn: Conn, token_id: int) -> None:
    """Make a token unusable (agents already enrolled with it stay enrolled)."""
    async with conn.transaction():
        cur = await conn.execute("UPDATE enrollment_tokens SET revoked = true WHERE id = %s", (token_id,))
    if cur.rowcount == 0:
        raise AdminError(f"no enrollment token with id {token_id}")


async def create_api_key(conn: Conn, org_id: str, role: str, name: str = "") -> IssuedKey:
    """An API key of `org_id` with `role` (analyst or fleet_admin)."""
    if role not in ROLES:
        raise AdminError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    await _require_org(conn, org_id)
    key = new_api_key()
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO api_keys (org_id, key_hash, prefix, role, name) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (org_id, digest(key), display_prefix(key), role, name),
        )
        (key_id,) = _one(await cur.fetchone())
    return IssuedKey(key_id, key, org_id, role, name)


async def list_api_keys(conn: Conn, org_id: str | None = None) -> list[KeyInfo]:
    """API keys, newest first."""
    async with conn.cursor(row_factory=class_row(KeyInfo)) as cur:
        await cur.execute(
            "SELECT id, prefix, org_id, role, name, revoked, created_at FROM api_keys "
            "WHERE %(org)s::text IS NULL OR org_id = %(org)s ORDER BY id DESC",
            {"org": org_id},
        )
        return await cur.fetchall()


async def revoke_api_key(conn: Conn, key_id: int) -> None:
    """Refuse a key from its next request on."""
    async with conn.transaction():
        cur = await conn.execute("UPDATE api_keys SET revoked = true WHERE id = %s", (key_id,))
    if cur.rowcount == 0:
        raise AdminError(f"no API key with id {key_id}")


async def list_agents(conn: Conn, org_id: str | None = None, site_id: str | None = None) -> list[AgentInfo]:
    """Enrolled agents (revoked ones too), by site then id."""
    async with conn.cursor(row_factory=class_row(AgentInfo)) as cur:
        await cur.execute(
            "SELECT id, org_id, site_id, status, version, hostname, enrolled_at, last_seen_at, hw_seq, clock_skew_s, "
            "clock_state, readings_restamped, readings_suspect "
            "FROM agents WHERE (%(org)s::text IS NULL OR org_id = %(org)s) "
            "AND (%(site)s::text IS NULL OR site_id = %(site)s) ORDER BY org_id, site_id, id",
            {"org": org_id, "site": site_id},
        )
        return await cur.fetchall()


async def revoke_agent(conn: Conn, agent_id: str, org_id: str | None = None) -> None:
    """Refuse the agent's uploads from its next one on; its data stays. With `org_id`, only if it is that org's."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE agents SET status = 'revoked', revoked_at = coalesce(revoked_at, now()) "
            "WHERE id = %s AND (%s::text IS NULL OR org_id = %s)",
            (agent_id, org_id, org_id),
        )
    if cur.rowcount == 0:
        raise AdminError(f"no agent {agent_id!r}")


async def _require_org(conn: Conn, org_id: str) -> None:
    cur = await conn.execute("SELECT 1 FROM organizations WHERE id = %s", (org_id,))
    if await cur.fetchone() is None:
        raise AdminError(f"no organization {org_id!r}; create it with `footfall collector orgs create`")


def _one(row: Any) -> Any:
    if row is None:
        raise AdminError("the database returned no row where one was expected")
    return row
