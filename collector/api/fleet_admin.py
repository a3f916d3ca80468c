"""The fleet admin API under `/v1/admin/...`, for `fleet_admin` keys, scoped to the key's organization.

| route | what |
|---|---|
| `POST /v1/admin/tokens` | an enrollment token `{site, expires, uses}`; the token in clear, once |
| `GET /v1/admin/tokens` | the organization's tokens with their state (active, expired, used_up, revoked) |
| `POST /v1/admin/tokens/{id}/revoke` | revoke a token |
| `GET /v1/admin/agents` | the fleet list: `?site=&state=online,stale&version=&sort=&desc=1&stale=15m&offline=24h` |
| `GET /v1/admin/agents/{agent}` | everything known of one agent: last heartbeat, sensors, recent gaps and errors, log |
| `POST /v1/admin/agents/{agent}/revoke` | its uploads and heartbeats get 401 from now on; its data stays |
| `POST /v1/admin/agents/{agent}/rotate-key` | the agent rotates its key at its next heartbeat |
| `POST /v1/admin/configs` | push `{scope: agent\\|site\\|all, target, config, note}`: a new version |
| `GET /v1/admin/configs/status` | which agents run which version |
| `GET /v1/admin/configs/{version}` | one pushed configuration |

Anything of another organization answers 404 exactly like nothing at all.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

from aiohttp import web
from footfall.protocol.fleet import MAX_CONFIG_BYTES

from footfall.units import format_duration, parse_duration

from .. import admin, fleet
from ..errors import AdminError, BadRequest, Conflict, NotFound
from ..http import json_object, shown, whole_number
from ..state import STATE
from .auth import Principal, authenticate

ROLE = "fleet_admin"
# The longest threshold (stale, offline) or token lifetime: a year.
MAX_DURATION = timedelta(days=365)
# Ids and versions are PostgreSQL bigints.
MAX_ID = 2**63 - 1


async def _principal(request: web.Request) -> Principal:
    return await authenticate(request, request.app[STATE].pool, ROLE)


def _duration(value: Any, name: str, longest: timedelta = MAX_DURATION) -> timedelta:
    """A duration parameter, more than zero and at most `longest`; 400 naming it and the range otherwise."""
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        seconds = 0.0
    if not 0 < seconds <= longest.total_seconds():
        raise BadRequest(
            f"{name} must be a duration above zero and at most {format_duration(longest.total_seconds())}, "
            f"such as 90s, 15m or 24h; got {shown(value)}"
        )
    return timedelta(seconds=seconds)


def _thresholds(request: web.Request) -> fleet.Thresholds:
    query = request.query
    stale = _duration(query["stale"], "stale") if "stale" in query else fleet.DEFAULT_STALE
    offline = _duration(query["offline"], "offline") if "offline" in query else max(fleet.DEFAULT_OFFLINE, stale)
    if offline < stale:
        raise BadRequest("offline must not be shorter than stale")
    return fleet.Thresholds(stale, offline)


def _id(request: web.Request, name: str) -> int:
    return whole_number(request.match_info[name], name, 1, MAX_ID, code="bad_request")


async def create_token_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/tokens`: 201 with the token in clear (shown only now)."""
    principal = await _principal(request)
    data = await json_object(request)
    site = data.get("site")
    uses = data.get("uses", 1)
    if not isinstance(site, str) or not site:
        raise BadRequest("site is required")
    if type(uses) is not int or not 1 <= uses <= 100_000:
        raise BadRequest(f"uses must be a whole number from 1 to 100000, got {uses!r}")
    expires = _duration(data.get("expires", "24h"), "expires")
    async with request.app[STATE].pool.connection() as conn:
        if not any(s.id == site for s in await admin.list_sites(conn, principal.org_id)):
            raise NotFound(f"no site {site!r} in this organization")
        try:
            issued = await admin.create_enrollment_token(
                conn, site, org_id=principal.org_id, expires=expires, uses=uses
            )
        except AdminError as exc:
            raise BadRequest(str(exc)) from None
    return web.json_response(
        {
            "id": issued.id,
            "token": issued.token,
            "site": issued.site_id,
            "expires_at": issued.expires_at.isoformat(),
            "uses": issued.uses,
        },
        status=201,
    )


async def list_tokens_handler(request: web.Request) -> web.Response:
    """`GET /v1/admin/tokens`: the organization's tokens (prefixes only), newest first."""
    principal = await _principal(request)
    async with request.app[STATE].pool.connection() as conn:
        tokens = await admin.list_enrollment_tokens(conn, principal.org_id)
        now = await fleet.now_utc(conn)
    return web.json_response(
        {
            "tokens": [
                {
                    "id": t.id,
                    "prefix": t.prefix,
                    "site": t.site_id,
                    "state": fleet.token_state(t.revoked, t.expires_at, t.uses_left, now),
                    "uses_left": t.uses_left,
                    "expires_at": t.expires_at.isoformat(),
                    "created_at": t.created_at.isoformat(),
                }
                for t in tokens
            ]
        }
    )


async def revoke_token_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/tokens/{id}/revoke`."""
    principal = await _principal(request)
    token_id = _id(request, "id")
    async with request.app[STATE].pool.connection() as conn:
        try:
            await fleet.revoke_token(conn, principal.org_id, token_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response({"id": token_id, "revoked": True})


async def list_agents_handler(request: web.Request) -> web.Response:
    """`GET /v1/admin/agents`: the organization's agents with state, backlog, skew and sources, filtered and sorted."""
    principal = await _principal(request)
    query = request.query
    states = frozenset(s for s in query.get("state", "").split(",") if s)
    unknown = states - set(fleet.STATES)
    if unknown:
        raise BadRequest(f"state must be among {', '.join(fleet.STATES)}, got {', '.join(sorted(unknown))}")
    sort = query.get("sort", "site")
    if sort not in fleet.SORT_KEYS:
        raise BadRequest(f"sort must be one of {', '.join(fleet.SORT_KEYS)}, got {sort!r}")
    agent_query = fleet.AgentQuery(
        site=query.get("site") or None,
        states=states,
        version=query.get("version") or None,
        sort=sort,
        descending=query.get("desc", "").lower() in ("1", "true", "yes"),
        thresholds=_thresholds(request),
    )
    async with request.app[STATE].pool.connection() as conn:
        now, agents = await fleet.list_fleet(conn, principal.org_id, agent_query)
    return web.json_response(
        {
            "now": now.isoformat(),
            "stale_after_s": agent_query.thresholds.stale.total_seconds(),
            "offline_after_s": agent_query.thresholds.offline.total_seconds(),
            "agents": [a.as_json(now) for a in agents],
        }
    )


async def show_agent_handler(request: web.Request) -> web.Response:
    """`GET /v1/admin/agents/{agent}`: everything known of one agent."""
    principal = await _principal(request)
    async with request.app[STATE].pool.connection() as conn:
        try:
            details = await fleet.agent_details(
                conn, principal.org_id, request.match_info["agent"], _thresholds(request)
            )
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(details)


async def revoke_agent_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/agents/{agent}/revoke`: 200 `{revoked: true, already: bool}`."""
    principal = await _principal(request)
    agent_id = request.match_info["agent"]
    async with request.app[STATE].pool.connection() as conn:
        try:
            changed = await fleet.revoke(conn, principal.org_id, agent_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    request.app[STATE].ingest.keys.drop(agent_id)
    return web.json_response({"id": agent_id, "revoked": True, "already": not changed})


async def rotate_agent_key_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/agents/{agent}/rotate-key`: 202, the agent rotates at its next heartbeat."""
    principal = await _principal(request)
    agent_id = request.match_info["agent"]
    async with request.app[STATE].pool.connection() as conn:
        try:
            at = await fleet.request_rotation(conn, principal.org_id, agent_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
        except fleet.Refused as exc:
            raise Conflict(str(exc), code="agent_revoked") from None
    return web.json_response({"id": agent_id, "rotate_requested_at": at.isoformat()}, status=202)


async def push_config_handler(request: web.Request) -> web.Response:
    """`POST /v1/admin/configs`: 201 with the new version and the agents it now targets."""
    principal = await _principal(request)
    data = await json_object(request, limit=MAX_CONFIG_BYTES * 2)
    scope, target, text, note = (data.get(k, "") for k in ("scope", "target", "config", "note"))
    if not all(isinstance(v, str) for v in (scope, target, text, note)):
        raise BadRequest("scope, target, config and note must be strings")
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise BadRequest(f"config is over {MAX_CONFIG_BYTES} bytes")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Only the syntax is checked here: what the keys mean is the agent's to judge, with its own loader.
        raise BadRequest(f"config is not valid TOML: {exc}", code="bad_config") from None
    async with request.app[STATE].pool.connection() as conn:
        try:
            push = await fleet.push_config(conn, principal.org_id, scope, target, text, note)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
        except fleet.Refused as exc:
            raise BadRequest(str(exc)) from None
    return web.json_response(
        {"version": push.version, "sha256": push.sha256, "scope": push.scope, "target": push.target,
         "agents": push.agents},
        status=201,
    )


async def config_status_handler(request: web.Request) -> web.Response:
    """`GET /v1/admin/configs/status`: per agent and per version."""
    principal = await _principal(request)
    async with request.app[STATE].pool.connection() as conn:
        status = await fleet.config_status(conn, principal.org_id, _thresholds(request))
    return web.json_response(status)


async def show_config_handler(request: web.Request) -> web.Response:
    """`GET /v1/admin/configs/{version}`."""
    principal = await _principal(request)
    version = _id(request, "version")
    async with request.app[STATE].pool.connection() as conn:
        try:
            document = await fleet.config_document(conn, principal.org_id, version)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(document)


def add_routes(app: web.Application) -> None:
    """Mount the fleet admin API (the existing `GET /v1/admin/agents` is replaced by the richer list)."""
    app.router.add_post("/v1/admin/tokens", create_token_handler)
    app.router.add_get("/v1/admin/tokens", list_tokens_handler)
    app.router.add_post("/v1/admin/tokens/{id}/revoke", revoke_token_handler)
    app.router.add_get("/v1/admin/agents", list_agents_handler)
    app.router.add_get("/v1/admin/agents/{agent}", show_agent_handler)
    app.router.add_post("/v1/admin/agents/{agent}/revoke", revoke_agent_handler)
    app.router.add_post("/v1/admin/agents/{agent}/rotate-key", rotate_agent_key_handler)
    app.router.add_post("/v1/admin/configs", push_config_handler)
    app.router.add_get("/v1/admin/configs/status", config_status_handler)
    app.router.add_get("/v1/admin/configs/{version}", show_config_handler)
