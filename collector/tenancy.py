"""Connections bound to one organization: the API's queries run under row-level security (migrations/0007).

`tenant_connection(pool, org_id)` opens a transaction that switches to the role `footfall_api`
and sets `footfall.org_id`; both are transaction-local, so the connection returns to the pool as
it came. Every query of an API key runs inside one, on top of its own `WHERE org_id = ...`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from .api.auth import Principal, check_key

API_ROLE = "footfall_api"
ORG_SETTING = "footfall.org_id"

Conn = psycopg.AsyncConnection[Any]


@contextlib.asynccontextmanager
async def tenant_connection(pool: AsyncConnectionPool[Any], org_id: str) -> AsyncIterator[Conn]:
    """A pooled connection inside a transaction that can see only `org_id`'s rows."""
    async with pool.connection() as conn, conn.transaction():
        await bind(conn, org_id)
        yield conn


@contextlib.asynccontextmanager
async def authorized(
    request: web.Request, pool: AsyncConnectionPool[Any], *roles: str
) -> AsyncIterator[tuple[Conn, Principal]]:
    """The caller's key checked (collector/api/auth.py), then a transaction bound to its organization."""
    async with pool.connection() as conn, conn.transaction():
        principal = await check_key(conn, request, *roles)
        await bind(conn, principal.org_id)
        yield conn, principal


async def bind(conn: Conn, org_id: str) -> None:
    """Bind the current transaction of `conn` to `org_id` under the API role."""
    await conn.execute(
        "SELECT set_config('role', %s, true), set_config(%s, %s, true)", (API_ROLE, ORG_SETTING, org_id)
    )
