"""The one tenancy gate: every route that acts for an organization gets its database connection from here.

Two kinds of caller act for an organization: people and scripts with an API key
(`Authorization: Bearer ffk_…`, collector/api/auth.py) and agents signing their fleet requests
(collector/api/fleet_agents.py). A handler is wrapped by `keyed(...)` or `signed(...)`, which
check its query string against the route's one declaration (collector/api/params.py) and hand it
a scope. The scope's `connection()` is the only way the handler reaches the database: a
transaction that has authenticated the caller, switched to the role `footfall_api` and set
`footfall.org_id` to the caller's organization. Both settings are transaction-local, so the
connection goes back to the pool as it came; row-level security (migrations 0007 and 0020) then
bounds every statement to that organization, on top of the queries' own `WHERE org_id = ...`.

tests/collector/test_tenancy.py walks the application's routes and fails for any that is neither
gated here nor on its short, reasoned list of routes that act for no organization (health, the
Prometheus scrape, ingest and enrollment, which authenticate by signature and by token).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler

from .api.auth import Principal, check_key, presented_key
from .api.params import QueryParam, check_query
from .errors import BadRequest
from .http import read_limited
from .state import STATE

API_ROLE = "footfall_api"
ORG_SETTING = "footfall.org_id"
# The attribute `keyed` and `signed` set on the handlers they wrap: a `Gate`.
GATE_ATTRIBUTE = "footfall_gate"

Conn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Gate:
    """How a route is entered: by API key (with the roles it takes) or by an agent's signature; its query string."""

    kind: Literal["api_key", "agent_signature"]
    roles: tuple[str, ...]
    query: tuple[QueryParam, ...]


def gate_of(handler: Any) -> Gate | None:
    """The gate a route's handler was wrapped by, or None for an ungated one."""
    gate = getattr(handler, GATE_ATTRIBUTE, None)
    return gate if isinstance(gate, Gate) else None


async def bind(conn: Conn, org_id: str) -> None:
    """Bind the current transaction of `conn` to `org_id` under the API role."""
    await conn.execute(
        "SELECT set_config('role', %s, true), set_config(%s, %s, true)", (API_ROLE, ORG_SETTING, org_id)
    )


class KeyScope:
    """A request made with an API key: who it is, and connections bound to its organization."""

    def __init__(self, request: web.Request, roles: tuple[str, ...]) -> None:
        self._request = request
        self._roles = roles
        self._principal: Principal | None = None

    async def principal(self) -> Principal:
        """The caller's key, checked now if no connection has checked it yet (401 or 403 otherwise).

        Handlers that read a body call this first, so that nobody holds a pooled connection while
        a client is slow to send.
        """
        if self._principal is None:
            async with self._request.app[STATE].pool.connection() as conn:
                self._principal = await check_key(conn, self._request, *self._roles)
        return self._principal

    @property
    def org_id(self) -> str:
        """The caller's organization (after `principal()` or `connection()`)."""
        if self._principal is None:
            raise RuntimeError("the key has not been checked yet: call principal() or connection() first")
        return self._principal.org_id

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction bound to the caller's organization (the key checked in it first)."""
        async with self._request.app[STATE].pool.connection() as conn, conn.transaction():
            if self._principal is None:
                self._principal = await check_key(conn, self._request, *self._roles)
            await bind(conn, self._principal.org_id)
            yield conn


KeyHandler = Callable[[web.Request, KeyScope], Awaitable[web.StreamResponse]]


def keyed(*roles: str, query: tuple[QueryParam, ...] = ()) -> Callable[[KeyHandler], Handler]:
    """Gate a route behind an API key of one of `roles`; its query string must be among `query`."""

    def wrap(handler: KeyHandler) -> Handler:
        @functools.wraps(handler)
        async def gated(request: web.Request) -> web.StreamResponse:
            presented_key(request)
            check_query(request.query, query)
            return await handler(request, KeyScope(request, roles))

        setattr(gated, GATE_ATTRIBUTE, Gate("api_key", roles, query))
        return gated

    return wrap


class SignedCaller(Protocol):
    """What a verified signature tells: the agent, and the organization it belongs to."""

    @property
    def id(self) -> str:
        """The agent's id."""
        ...

    @property
    def org_id(self) -> str:
        """Its organization."""
        ...


A = TypeVar("A", bound=SignedCaller)


class AgentScope(Generic[A]):
    """A request an agent signed: the verified agent, the body it signed, and connections bound to its organization."""

    def __init__(self, request: web.Request, agent: A, body: bytes) -> None:
        self._request = request
        self.agent = agent
        self.body = body

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction bound to the agent's organization under the API role."""
        async with self._request.app[STATE].pool.connection() as conn, conn.transaction():
            await bind(conn, self.agent.org_id)
            yield conn


def signed(
    verify: Callable[[web.Request, bytes], Awaitable[A]], *, limit: int
) -> Callable[[Callable[[web.Request, AgentScope[A]], Awaitable[web.StreamResponse]]], Handler]:
    """Gate a route behind an agent's signature: the body (at most `limit` bytes) read, then `verify`d (401 if not)."""

    def wrap(handler: Callable[[web.Request, AgentScope[A]], Awaitable[web.StreamResponse]]) -> Handler:
        @functools.wraps(handler)
        async def gated(request: web.Request) -> web.StreamResponse:
            check_query(request.query, ())
            body = await read_limited(request, limit)
            if body is None:
                raise BadRequest(f"the body is over {limit} bytes")
            agent = await verify(request, body)
            return await handler(request, AgentScope(request, agent, body))

        setattr(gated, GATE_ATTRIBUTE, Gate("agent_signature", (), ()))
        return gated

    return wrap
