"""The collector's aiohttp application: routes, the error middleware, and the parts' lifetimes.

`make_app(dsn, settings)` builds it; nothing is global, so a test can run several side by side.
At startup it opens a connection pool (without waiting for the database: requests answer 503
until it is reachable), and starts the hourly task that creates partitions ahead. At cleanup
it stops the task and closes the pool. Migrations are not run here: `serve` runs them first
(collector/server.py), and tests start from a migrated template database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from footfall.logs import event

from .api import fleet_admin, fleet_agents
from .api.agents import enroll_handler
from .api.metrics import footfall_handler
from .http import add_server_time, error_middleware
from .ingest import Ingest
from .observability import CollectorMetrics, metrics_middleware
from .observability import add_routes as add_observability_routes
from .settings import CollectorSettings
from .state import STATE, CollectorState
from .store import Store

log = logging.getLogger("footfall.collector.app")

PARTITION_INTERVAL_S = 3600.0
# After a failed attempt (database down), try again sooner than the hourly cadence.
PARTITION_RETRY_S = 60.0


def make_app(dsn: str, settings: CollectorSettings | None = None) -> web.Application:
    """The collector application for the database at `dsn`."""
    settings = settings or CollectorSettings()
    metrics = CollectorMetrics()
    app = web.Application(middlewares=[metrics_middleware(metrics), error_middleware(settings.retry_after)])
    app.on_response_prepare.append(add_server_time)
    app.cleanup_ctx.append(_lifetime(dsn, settings))
    app.router.add_post("/v1/ingest", _ingest)
    app.router.add_post("/v1/agents/enroll", enroll_handler)
    app.router.add_get("/v1/sites/{site}/footfall", footfall_handler)
    app.router.add_get("/v1/health", health_handler)
    fleet_agents.add_routes(app)
    fleet_admin.add_routes(app)
    add_observability_routes(app, metrics)
    return app


def _lifetime(dsn: str, settings: CollectorSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=settings.pool_size,
            open=False,
            timeout=settings.database_timeout,
            kwargs={"autocommit": True},
            # A connection broken by a database restart is noticed before a request gets it.
            check=AsyncConnectionPool.check_connection,
            name="collector",
        )
        await pool.open(wait=False)
        store = Store()
        ingest = Ingest(pool, store, window_s=settings.timestamp_window, max_body=settings.max_body)
        app[STATE] = CollectorState(settings, pool, store, ingest)
        stop = asyncio.Event()
        maintenance = asyncio.create_task(_make_partitions(pool, store, stop), name="collector-partitions")
        try:
            yield
        finally:
            # Asked to stop rather than cancelled: a task cancelled while it waits for a pool
            # connection or a query can leave the pool unable to close.
            stop.set()
            await maintenance
            await pool.close()

    return lifetime


async def _ingest(request: web.Request) -> web.StreamResponse:
    return await request.app[STATE].ingest.handle(request)


async def _make_partitions(pool: AsyncConnectionPool[Any], store: Store, stop: asyncio.Event) -> None:
    """Create this month's and the next months' partitions now and every hour, until `stop` is set."""
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                await store.ensure_ahead(conn, datetime.now(UTC))
            delay = PARTITION_INTERVAL_S
        except (psycopg.OperationalError, PoolTimeout) as exc:
            event(log, "partitions_ahead_failed", logging.WARNING, error=str(exc).strip(), retry_in_s=PARTITION_RETRY_S)
            delay = PARTITION_RETRY_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def health_handler(request: web.Request) -> web.Response:
    """`GET /v1/health`: 200 when the database answers, 503 otherwise; with ingest counters since start."""
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return web.json_response({"status": "ok", "database": "ok", "ingest": state.ingest.stats.as_json()})
