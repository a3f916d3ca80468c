"""The fleet endpoints agents call, each signed like an upload (protocol/SPEC.md sections 8-11).

- `POST /v1/agents/heartbeat`: store the agent's status; answer with the configuration it
  should run and whether it should rotate its key.
- `GET /v1/agents/config/{version}`: a pushed configuration that covers this agent.
- `POST /v1/agents/config/{version}/report`: the agent applied it, or refused it and why.
- `POST /v1/agents/rotate-key`: the current key vouches for a new one, which proves itself.

Verification is the same as ingest's (collector/ingest.py), without its key cache: these
requests are rare (one heartbeat a minute per agent), so each reads the agent row, and a
revocation or a rotation bites on the very next one. Once verified, each request works through
the tenancy gate (collector/tenancy.py `signed`): a transaction under the API role bound to the
agent's organization, so row-level security holds an agent to its own organization's rows.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web
from footfall.protocol import fleet as proto
from footfall.protocol.errors import AuthError
from footfall.protocol.signing import check_timestamp, read_headers, verify_request

from footfall.logs import event

from .. import fleet
from ..errors import Conflict, NotFound
from ..http import whole_number
from ..state import STATE
from ..tenancy import AgentScope, signed

log = logging.getLogger("footfall.collector.fleet")


@dataclass(frozen=True, slots=True)
class SignedAgent:
    """An agent whose request verified: who it is, and the skew of its clock as this request shows it."""

    id: str
    org_id: str
    site_id: str
    public_key: bytes
    skew_s: float


async def verify_agent(request: web.Request, body: bytes) -> SignedAgent:
    """Check the signing headers, the agent's status, the timestamp window and the signature; 401 otherwise."""
    state = request.app[STATE]
    signed = read_headers(request.headers)
    async with state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT org_id, site_id, public_key, status FROM agents WHERE id = %s", (signed.agent,))
        ).fetchone()
    if row is None:
        raise AuthError(f"agent {signed.agent!r} is not enrolled with this collector; enroll it", code="unknown_agent")
    org_id, site_id, public_key, status = row[0], row[1], bytes(row[2]), row[3]
    if status != "active":
        raise AuthError(
            f"agent {signed.agent!r} has been revoked; enroll it again with a new token", code="revoked_agent"
        )
    now = time.time()
    check_timestamp(signed.timestamp, now, int(state.settings.timestamp_window))
    verify_request(public_key, request.method, request.path, signed, body)
    skew = proto.clock_skew(signed.timestamp, proto.read_clock_offset(request.headers), now)
    return SignedAgent(signed.agent, org_id, site_id, public_key, skew)


def _version(request: web.Request) -> int:
    return whole_number(request.match_info["version"], "a configuration version", 1, 2**63 - 1, code="bad_request")


@signed(verify_agent, limit=proto.MAX_MESSAGE_BYTES)
async def heartbeat_handler(request: web.Request, scope: AgentScope[SignedAgent]) -> web.Response:
    """`POST /v1/agents/heartbeat`: store the status; answer with the desired configuration and rotation flag."""
    agent = scope.agent
    heartbeat = proto.decode_heartbeat(scope.body)
    async with scope.connection() as conn:
        await fleet.record_heartbeat(conn, agent.id, agent.org_id, heartbeat, agent.skew_s)
        desired = await fleet.desired_config(conn, agent.id)
        rotate = await (
            await conn.execute("SELECT rotate_requested_at IS NOT NULL FROM agents WHERE id = %s", (agent.id,))
        ).fetchone()
    answer = proto.HeartbeatAnswer(
        server_time_ms=int(time.time() * 1000),
        clock_skew_s=agent.skew_s,
        config=desired,
        rotate_key=bool(rotate and rotate[0]),
    )
    return web.json_response(answer.as_json())


@signed(verify_agent, limit=proto.MAX_MESSAGE_BYTES)
async def config_handler(request: web.Request, scope: AgentScope[SignedAgent]) -> web.Response:
    """`GET /v1/agents/config/{version}`: the configuration text, if a push of it covered this agent."""
    version = _version(request)
    async with scope.connection() as conn:
        try:
            document = await fleet.config_for_agent(conn, scope.agent.id, version)
        except fleet.NotFound as exc:
            raise NotFound(str(exc)) from None
    return web.json_response(document.as_json())


@signed(verify_agent, limit=proto.MAX_MESSAGE_BYTES)
async def config_report_handler(request: web.Request, scope: AgentScope[SignedAgent]) -> web.Response:
    """`POST /v1/agents/config/{version}/report`: what the agent did with a configuration."""
    version = _version(request)
    agent = scope.agent
    report = proto.decode_config_report(scope.body)
    async with scope.connection() as conn:
        current = await (
            await conn.execute(
                "SELECT config_applied_version, config_rejected_version, config_error FROM agents WHERE id = %s",
                (agent.id,),
            )
        ).fetchone()
        assert current is not None
        applied, rejected, error = current
        if report.status == "applied":
            applied = version
            if rejected == version:
                rejected, error = 0, ""
        else:
            rejected, error = version, report.error or "refused without a reason"
        await fleet.record_config_state(conn, agent.id, agent.org_id, applied, rejected, error)
    event(log, "config_reported", agent=agent.id, version=version, status=report.status)
    return web.json_response({})


@signed(verify_agent, limit=proto.MAX_MESSAGE_BYTES)
async def rotate_key_handler(request: web.Request, scope: AgentScope[SignedAgent]) -> web.Response:
    """`POST /v1/agents/rotate-key`: replace the agent's key by the new one its current key vouches for."""
    agent = scope.agent
    rotation = proto.decode_rotation(scope.body)
    answer: dict[str, Any] = {"agent_id": agent.id, "rotated": True}
    if rotation.new_public_key == base64.b64encode(agent.public_key).decode():
        return web.json_response(answer)  # a retry signed with the new key: already done
    new_key = proto.verify_rotation(agent.id, agent.public_key, rotation)
    async with scope.connection() as conn:
        try:
            await fleet.rotate_key(conn, agent.id, agent.org_id, agent.public_key, new_key)
        except psycopg.errors.UniqueViolation:
            raise Conflict("that public key belongs to another agent", code="key_already_enrolled") from None
        except fleet.Refused as exc:
            raise AuthError(str(exc), code="bad_signature") from None
    request.app[STATE].ingest.keys.drop(agent.id)
    event(log, "key_rotated", agent=agent.id)
    return web.json_response(answer)


def add_routes(app: web.Application) -> None:
    """Mount the agent-facing fleet endpoints."""
    app.router.add_post(proto.HEARTBEAT_PATH, heartbeat_handler)
    app.router.add_get("/v1/agents/config/{version}", config_handler)
    app.router.add_post("/v1/agents/config/{version}/report", config_report_handler)
    app.router.add_post(proto.ROTATE_KEY_PATH, rotate_key_handler)
