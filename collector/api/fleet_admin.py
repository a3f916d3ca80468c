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

Anything of another organization answers 404 exactly like nothing at all: every handler gets its
connection from the tenancy gate (collector/tenancy.py), under row-level security bound to the
key's organization, on top of the organization filter of each query in collector/fleet.py.
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
from ..http import json_object, shown
from ..state import STATE
from ..tenancy import KeyScope, keyed
from .params import DURATION_PATTERN, SITE_ID_PATTERN, TEXT_PATTERN, QueryParam, path_id

ROLE = "fleet_admin"
# The longest threshold (stale, offline) or token lifetime: a year.
MAX_DURATION = timedelta(days=365)

_STATE = "(" + "|".join(fleet.STATES) + ")"
THRESHOLDS_QUERY = (
    QueryParam("stale", {"type": "string", "pattern": DURATION_PATTERN},
               "silence after which an agent is stale, above zero and at most 365d: 90s, 15m, 24h, 7d (15m)"),
    QueryParam("offline", {"type": "string", "pattern": DURATION_PATTERN},
               "silence after which it is offline, not shorter than stale and at most 365d (24h)"),
)
AGENTS_QUERY = (
    QueryParam("site", {"type": "string", "pattern": SITE_ID_PATTERN}, "only this site's agents"),
    QueryParam("state", {"type": "string", "pattern": f"^{_STATE}(,{_STATE})*$"},
               f"only agents in these comma-separated states: {', '.join(fleet.STATES)}"),
    QueryParam("version", {"type": "string", "pattern": TEXT_PATTERN, "minLength": 1, "maxLength": 64},
               "only agents running this version"),
    QueryParam("sort", {"type": "string", "enum": list(fleet.SORT_KEYS)}, "the order (site)"),
    QueryParam("desc", {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
               "true for descending order (false)"),
    *THRESHOLDS_QUERY,
)


def _duration(value: Any, name: str, code: str, longest: timedelta = MAX_DURATION) -> timedelta:
    """A duration parameter, more than zero and at most `longest`; 400 `code` naming it and the range otherwise."""
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        seconds = 0.0
    if not 0 < seconds <= longest.total_seconds():
        raise BadRequest(
            f"{name} must be a duration above zero and at most {format_duration(longest.total_seconds())}, "
            f"such as 90s, 15m or 24h; got {shown(value)}",
            code=code,
        )
    return timedelta(seconds=seconds)


def _thresholds(request: web.Request) -> fleet.Thresholds:
    query = request.query
    stale = _duration(query["stale"], "stale", "bad_thresholds") if "stale" in query else fleet.DEFAULT_STALE
    offline = max(fleet.DEFAULT_OFFLINE, stale)
    if "offline" in query:
        offline = _duration(query["offline"], "offline", "bad_thresholds")
    if offline < stale:
        raise BadRequest("offline must not be shorter than stale", code="bad_thresholds")
    return fleet.Thresholds(stale, offline)


@keyed(ROLE)
async def create_token_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/tokens`: 201 with the token in clear (shown only now)."""
    await scope.principal()
    data = await json_object(request)
    site = data.get("site")
    uses = data.get("uses", 1)
    if isinstance(uses, float) and uses.is_integer():
        uses = int(uses)  # JSON has one number type: 3.0 is 3
    if not isinstance(site, str) or not site:
        raise BadRequest("site is required: the id of the site the agents will count for")
    if type(uses) is not int or not 1 <= uses <= 100_000:
        raise BadRequest(f"uses must be a whole number from 1 to 100000, got {uses!r}")
    expires = _duration(data.get("expires", "24h"), "expires", "bad_expiry")
    async with scope.connection() as conn:
        if not any(s.id == site for s in await admin.list_sites(conn, scope.org_id)):
            raise NotFound(f"no site {site!r} in this organization")
        try:
            issued = await admin.create_enrollment_token(
                conn, site, org_id=scope.org_id, expires=expires, uses=uses
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


@keyed(ROLE)
async def list_tokens_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/admin/tokens`: the organization's tokens (prefixes only), newest first."""
    async with scope.connection() as conn:
        tokens = await admin.list_enrollment_tokens(conn, scope.org_id)
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


@keyed(ROLE)
async def revoke_token_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/tokens/{id}/revoke`."""
    token_id = path_id(request.match_info["id"], "id")
    async with scope.connection() as conn:
        try:
            await fleet.revoke_token(conn, scope.org_id, token_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response({"id": token_id, "revoked": True})


@keyed(ROLE, query=AGENTS_QUERY)
async def list_agents_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/admin/agents`: the organization's agents with state, backlog, skew and sources, filtered and sorted."""
    query = request.query  # each value already within AGENTS_QUERY
    async with scope.connection() as conn:
        agent_query = fleet.AgentQuery(
            site=query.get("site"),
            states=frozenset(query.get("state", "").split(",")) - {""},
            version=query.get("version"),
            sort=query.get("sort", "site"),
            descending=query.get("desc", "false") in ("1", "true", "yes"),
            thresholds=_thresholds(request),
        )
        now, agents = await fleet.list_fleet(conn, scope.org_id, agent_query)
    return web.json_response(
        {
            "now": now.isoformat(),
            "stale_after_s": agent_query.thresholds.stale.total_seconds(),
            "offline_after_s": agent_query.thresholds.offline.total_seconds(),
            "agents": [a.as_json(now) for a in agents],
        }
    )


@keyed(ROLE, query=THRESHOLDS_QUERY)
async def show_agent_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/admin/agents/{agent}`: everything known of one agent."""
    async with scope.connection() as conn:
        thresholds = _thresholds(request)
        try:
            details = await fleet.agent_details(conn, scope.org_id, request.match_info["agent"], thresholds)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(details)


@keyed(ROLE)
async def revoke_agent_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/agents/{agent}/revoke`: 200 `{revoked: true, already: bool}`."""
    agent_id = request.match_info["agent"]
    async with scope.connection() as conn:
        try:
            changed = await fleet.revoke(conn, scope.org_id, agent_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    request.app[STATE].ingest.keys.drop(agent_id)
    return web.json_response({"id": agent_id, "revoked": True, "already": not changed})


@keyed(ROLE)
async def rotate_agent_key_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/agents/{agent}/rotate-key`: 202, the agent rotates at its next heartbeat."""
    agent_id = request.match_info["agent"]
    async with scope.connection() as conn:
        try:
            at = await fleet.request_rotation(conn, scope.org_id, agent_id)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
        except fleet.Refused as exc:
            raise Conflict(str(exc), code="agent_revoked") from None
    return web.json_response({"id": agent_id, "rotate_requested_at": at.isoformat()}, status=202)


@keyed(ROLE)
async def push_config_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`POST /v1/admin/configs`: 201 with the new version and the agents it now targets."""
    await scope.principal()
    data = await json_object(request, limit=MAX_CONFIG_BYTES * 2)
    for required in ("scope", "config"):
        if required not in data:
            raise BadRequest(f"{required} is required", code="missing_parameter")
    to, target, text, note = (data.get(k, "") for k in ("scope", "target", "config", "note"))
    if not all(isinstance(v, str) for v in (to, target, text, note)):
        raise BadRequest("scope, target, config and note must be strings")
    if to not in fleet.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(fleet.SCOPES)}, got {to!r}")
    if to != "all" and not target:
        raise BadRequest(f"a push to one {to} needs its id as target", code="missing_target")
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise BadRequest(f"config is over {MAX_CONFIG_BYTES} bytes", code="config_too_large")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Only the syntax is checked here: what the keys mean is the agent's to judge, with its own loader.
        raise BadRequest(f"config is not valid TOML: {exc}", code="bad_config") from None
    async with scope.connection() as conn:
        try:
            push = await fleet.push_config(conn, scope.org_id, to, target, text, note)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
        except fleet.Refused as exc:
            raise Conflict(str(exc), code="agent_revoked") from None
    return web.json_response(
        {"version": push.version, "sha256": push.sha256, "scope": push.scope, "target": push.target,
         "agents": push.agents},
        status=201,
    )


@keyed(ROLE, query=THRESHOLDS_QUERY)
async def config_status_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/admin/configs/status`: per agent and per version."""
    async with scope.connection() as conn:
        thresholds = _thresholds(request)
        status = await fleet.config_status(conn, scope.org_id, thresholds)
    return web.json_response(status)


@keyed(ROLE)
async def show_config_handler(request: web.Request, scope: KeyScope) -> web.Response:
    """`GET /v1/admin/configs/{version}`."""
    version = path_id(request.match_info["version"], "version")
    async with scope.connection() as conn:
        try:
            document = await fleet.config_document(conn, scope.org_id, version)
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
