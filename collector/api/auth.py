"""Who is calling: `Authorization: Bearer ffk_…` API keys, each bound to one organization and a role.

collector/tenancy.py checks the key when a route asks for a connection, and binds that
connection to the key's organization: every query a key makes is filtered by it, and a resource
of another organization answers 404 exactly as one that does not exist. A key learns nothing
about other tenants, not even that a site id is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from aiohttp import web

from ..credentials import API_KEY_PREFIX, digest
from ..errors import Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="footfall"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API key."""

    key_id: int
    org_id: str
    role: str


def presented_key(request: web.Request) -> str:
    """The API key the request presents, by its form only (no database): 401 when there is none or it is malformed.

    The gate calls this before it checks the query string, so a caller without a key learns nothing of a route.
    """
    header = request.headers.get("Authorization", "")
    if not header.isascii():
        # Raw bytes that are not UTF-8 arrive as surrogates, which no digest can be taken of.
        raise Unauthorized(
            f"the Authorization header holds bytes that are not ASCII; an API key is {API_KEY_PREFIX} followed by "
            "letters, digits, - and _",
            code="invalid_api_key",
            headers=_CHALLENGE,
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized(
            f"this endpoint needs an API key: send `Authorization: Bearer {API_KEY_PREFIX}…`",
            code="missing_api_key",
            headers=_CHALLENGE,
        )
    return key


async def check_key(conn: psycopg.AsyncConnection[Any], request: web.Request, *roles: str) -> Principal:
    """The caller's key, checked on `conn` (before its transaction is bound to an organization); its role must be
    one of `roles`. 401 without a known, unrevoked key; 403 for another role."""
    key = presented_key(request)
    cur = await conn.execute(
        "SELECT id, org_id, role FROM api_keys WHERE key_hash = %s AND NOT revoked", (digest(key),)
    )
    row = await cur.fetchone()
    if row is None:
        raise Unauthorized("this API key is unknown or revoked", code="invalid_api_key", headers=_CHALLENGE)
    principal = Principal(*row)
    if principal.role not in roles:
        raise Forbidden(f"this needs a key with the role {' or '.join(roles)}; this key is {principal.role}")
    return principal
