"""Agents: `POST /v1/agents/enroll` (protocol/SPEC.md §5). The fleet admin API is in fleet_admin.py.

Enrollment trades a one-time token (bound to an organization and a site) and the agent's
Ed25519 public key for an agent id. It is one transaction: the token row is locked, checked
(known, not revoked, not expired, uses left), a use is spent and the agent row written, or
nothing happens. The same token and key enrolling again get the same agent back (201): an
agent whose first answer was lost on a flaky uplink must not be locked out by its own retry.
A key that is not a sound Ed25519 public key (`signing.public_key_problem`: small order, not
canonical, not a point) is refused with 400 before the token is even looked at.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import psycopg
from aiohttp import web
from footfall.protocol.signing import public_key_problem

from ..credentials import TOKEN_PREFIX, digest, new_agent_id
from ..errors import BadRequest, Conflict, Unauthorized
from ..http import json_object
from ..state import STATE

Conn = psycopg.AsyncConnection[Any]


async def enroll_handler(request: web.Request) -> web.Response:
    """`POST /v1/agents/enroll`: 201 with the agent id, its organization, site and the site's zone."""
    data = await json_object(request)
    token = _field(data, "token", required=True)
    key_b64 = _field(data, "public_key", required=True)
    hostname = _field(data, "hostname")[:255]
    version = _field(data, "version")[:64]
    try:
        public_key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("public_key must be standard base64") from None
    problem = public_key_problem(public_key)
    if problem is not None:
        raise BadRequest(f"public_key {problem}; generate a new Ed25519 key")
    async with request.app[STATE].pool.connection() as conn:
        answer = await enroll(conn, token, public_key, hostname=hostname, version=version)
    return web.json_response(answer, status=201)


async def enroll(conn: Conn, token: str, public_key: bytes, *, hostname: str = "", version: str = "") -> dict[str, str]:
    """Enroll an agent with `token`; the answer body of SPEC.md §5. Raises Unauthorized or Conflict."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT t.id, t.org_id, t.site_id, t.revoked, t.expires_at <= now(), t.uses_left, s.timezone "
            "FROM enrollment_tokens t JOIN sites s ON s.org_id = t.org_id AND s.id = t.site_id "
            "WHERE t.token_hash = %s FOR UPDATE OF t",
            (digest(token),),
        )
        row = await cur.fetchone()
        if row is None:
            raise Unauthorized(
                f"this enrollment token is not known here; check it was copied whole ({TOKEN_PREFIX}…) "
                "or ask for a new one",
                code="unknown_token",
            )
        token_id, org_id, site_id, revoked, expired, uses_left, timezone = row
        if revoked:
            raise Unauthorized("this enrollment token has been revoked; ask for a new one", code="token_revoked")
        answer = {"organization": org_id, "site": site_id, "timezone": timezone}
        cur = await conn.execute(
            "SELECT id, enrollment_token_id, status FROM agents WHERE public_key = %s", (public_key,)
        )
        existing = await cur.fetchone()
        if existing is not None:
            if existing[1] == token_id and existing[2] == "active":
                return {"agent_id": existing[0], **answer}
            raise Conflict(
                "this public key is already enrolled; an agent enrolling again must generate a new key",
                code="key_already_enrolled",
            )
        if expired:
            raise Unauthorized("this enrollment token has expired; ask for a new one", code="token_expired")
        if uses_left <= 0:
            raise Unauthorized("this enrollment token has been used up; ask for a new one", code="token_used_up")
        agent_id = new_agent_id()
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO agents (id, org_id, site_id, public_key, enrollment_token_id, hostname, version) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (agent_id, org_id, site_id, public_key, token_id, hostname, version),
                )
        except psycopg.errors.UniqueViolation:
            # The same key enrolled concurrently through another request: one of them wins.
            raise Conflict("this public key is already enrolled", code="key_already_enrolled") from None
        await conn.execute("UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = %s", (token_id,))
    return {"agent_id": agent_id, **answer}


def _field(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if required and not value:
        raise BadRequest(f"{name} is required")
    return value
