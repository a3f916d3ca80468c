"""The collector's Prometheus metrics (`GET /metrics`) and its probes (`GET /healthz`, `GET /readyz`).

One registry per application (no global default registry), so two collectors in one process
(the tests) never mix their numbers. What is counted where:

- the outermost middleware counts every answer by route template, method and status code,
  and times it; an upload's time is also the ingest batch latency (verify, decode, commit);
- ingest's own counters (collector/ingest.py `IngestStats`) are read at scrape time: batches,
  records stored, duplicates dropped, refusals by code;
- at scrape time one short query counts the partitions of the raw tables and the agents of
  every organization by state (online within 15 minutes, stale within 24 hours, offline).

`/healthz` is liveness: 200 as long as the process serves. `/readyz` is readiness: 200 only
when the database answers and its schema is the one this collector needs, else 503 (a load
balancer then sends traffic elsewhere). `/v1/health` (ingest counters) stays as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from footfall.logs import event

from .migrate import load_migrations
from .state import STATE
from .store import PARTITIONED_TABLES

log = logging.getLogger("footfall.collector.observability")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCRAPE_QUERY_TIMEOUT_S = 2.0
_FLEET_QUERY = """
SELECT CASE WHEN status <> 'active' THEN 'revoked'
            WHEN greatest(last_heartbeat_at, last_seen_at) IS NULL THEN 'offline'
            WHEN greatest(last_heartbeat_at, last_seen_at) > now() - interval '15 minutes' THEN 'online'
            WHEN greatest(last_heartbeat_at, last_seen_at) > now() - interval '24 hours' THEN 'stale'
            ELSE 'offline' END AS state, count(*)
FROM agents GROUP BY 1
"""
_PARTITIONS_QUERY = """
SELECT parent.relname, count(*) FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
WHERE parent.relname = ANY(%s) GROUP BY 1
"""


class CollectorMetrics:
    """The application's registry and the instruments the middleware feeds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "footfall_collector_requests",
            "HTTP answers by route template, method and status code",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "footfall_collector_request_seconds",
            "time to answer a request, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingest_latency = Histogram(
            "footfall_collector_ingest_batch_seconds",
            "time to verify, decode and commit one accepted upload",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.snapshot: dict[str, Any] = {}
        self._app: web.Application | None = None
        self.registry.register(_Scraped(self))

    def bind(self, app: web.Application) -> None:
        """Read ingest's counters from this application's state at scrape time."""
        self._app = app

    def ingest_stats(self) -> dict[str, Any] | None:
        """Ingest's counters, or None before the application has started."""
        if self._app is None or STATE not in self._app:
            return None
        return self._app[STATE].ingest.stats.as_json()


METRICS = web.AppKey("footfall_collector_metrics", CollectorMetrics)


class _Scraped:
    """Metrics computed when scraped: ingest's counters and the last database snapshot."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        """Nothing to describe ahead: the families depend on what was scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the scrape-time families."""
        stats = self.metrics.ingest_stats()
        if stats is not None:
            yield CounterMetricFamily("footfall_collector_ingest_batches", "uploads committed", value=stats["batches"])
            yield CounterMetricFamily(
                "footfall_collector_ingest_records", "records stored by ingest", value=stats["accepted"]
            )
            yield CounterMetricFamily(
                "footfall_collector_ingest_duplicates",
                "records dropped as already stored (replays, retries)",
                value=stats["duplicates"],
            )
            rejected = CounterMetricFamily(
                "footfall_collector_ingest_rejected", "uploads refused, by error code", labels=["code"]
            )
            for code, count in sorted(stats["rejected"].items()):
                rejected.add_metric([code], count)
            yield rejected
        snapshot = self.metrics.snapshot
        yield GaugeMetricFamily(
            "footfall_collector_database_up", "1 if the last scrape's queries answered", value=snapshot.get("up", 0)
        )
        partitions = GaugeMetricFamily(
            "footfall_collector_partitions", "partitions of each month-partitioned table", labels=["table"]
        )
        for table, count in sorted(snapshot.get("partitions", {}).items()):
            partitions.add_metric([table], count)
        yield partitions
        agents = GaugeMetricFamily(
            "footfall_collector_agents", "agents of every organization by state (stale after 15m)", labels=["state"]
        )
        for state in ("online", "stale", "offline", "revoked"):
            agents.add_metric([state], snapshot.get("agents", {}).get(state, 0))
        yield agents


def metrics_middleware(metrics: CollectorMetrics) -> Middleware:
    """The outermost middleware: count and time every answer, including the error middleware's."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.requests.labels(route, request.method, str(code)).inc()
            metrics.latency.labels(route).observe(elapsed)
            if route == "/v1/ingest" and 200 <= code < 300:
                metrics.ingest_latency.observe(elapsed)

    return measure


async def metrics_handler(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text format; the database figures are refreshed first (bounded in time)."""
    metrics = request.app[METRICS]
    state = request.app[STATE]
    try:
        async with state.pool.connection(timeout=SCRAPE_QUERY_TIMEOUT_S) as conn:
            fleet = await (await conn.execute(_FLEET_QUERY)).fetchall()
            parts = await (await conn.execute(_PARTITIONS_QUERY, (list(PARTITIONED_TABLES),))).fetchall()
        metrics.snapshot = {"up": 1, "agents": dict(fleet), "partitions": dict(parts)}
    except (psycopg.Error, PoolTimeout) as exc:
        event(log, "metrics_database_unavailable", logging.WARNING, error=str(exc).strip())
        metrics.snapshot = {**metrics.snapshot, "up": 0}
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz_handler(request: web.Request) -> web.Response:
    """`GET /healthz`: the process is alive and serving."""
    return web.json_response({"status": "ok"})


async def readyz_handler(request: web.Request) -> web.Response:
    """`GET /readyz`: 200 when the database answers with this collector's schema; 503 with the reason otherwise."""
    state = request.app[STATE]
    wanted = load_migrations()[-1].version
    try:
        async with state.pool.connection(timeout=SCRAPE_QUERY_TIMEOUT_S) as conn:
            row = await (await conn.execute("SELECT max(version) FROM schema_migrations")).fetchone()
    except (psycopg.Error, PoolTimeout) as exc:
        return web.json_response(
            {"status": "unavailable", "database": "unreachable", "message": str(exc).strip()[:300]}, status=503
        )
    have = row[0] if row else None
    if have != wanted:
        return web.json_response(
            {"status": "unavailable", "database": "ok", "message": f"schema at {have}, this collector needs {wanted}"},
            status=503,
        )
    return web.json_response({"status": "ok", "database": "ok", "schema": have})


def add_routes(app: web.Application, metrics: CollectorMetrics) -> None:
    """Mount /metrics, /healthz and /readyz, and keep `metrics` on the application."""
    app[METRICS] = metrics
    metrics.bind(app)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/readyz", readyz_handler)
