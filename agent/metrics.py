"""The agent's Prometheus metrics, served at `/metrics` on `[metrics] listen` (off by default).

One registry per pipeline (no global default registry). Most figures are read when scraped
from the counters every stage already keeps for `status` and the heartbeat (each source's
`SourceHealth`, the buffer's pending set and last stats, the uploader's `UploadStatus`), so
nothing is counted twice; the upload latency is a histogram the uploader feeds after every
request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from footfall.agent.config.reader import split_listen
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from footfall.logs import event

if TYPE_CHECKING:
    from footfall.agent.pipeline import Pipeline

log = logging.getLogger("footfall.agent.metrics")
UPLOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    """The registry of one pipeline and the upload latency histogram."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.registry = CollectorRegistry(auto_describe=True)
        self.upload_seconds = Histogram(
            "footfall_agent_upload_seconds",
            "time from sending an upload to the collector's answer, by answer class",
            ["outcome"],
            buckets=UPLOAD_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Scraped(pipeline))

    def observe_upload(self, seconds: float, status: int) -> None:
        """Called by the uploader after every request (status 0: no answer)."""
        outcome = "none" if status == 0 else f"{status // 100}xx"
        self.upload_seconds.labels(outcome).observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class _Scraped:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        p = self.pipeline
        taken = CounterMetricFamily(
            "footfall_agent_records_taken", "readings committed to the buffer", labels=["source"]
        )
        resends = CounterMetricFamily(
            "footfall_agent_resends_dropped", "readings dropped as resends of ones already taken", labels=["source"]
        )
        frames = CounterMetricFamily("footfall_agent_frames_received", "frames received", labels=["source"])
        errors = CounterMetricFamily(
            "footfall_agent_source_errors", "frames refused or not stored, per source", labels=["source"]
        )
        refused = CounterMetricFamily(
            "footfall_agent_source_records_rejected",
            "records of the source the collector refused as malformed (parked, never counted)",
            labels=["source"],
        )
        up = GaugeMetricFamily("footfall_agent_source_up", "1 while the source is ok", labels=["source", "state"])
        for intake in p.intakes:
            h = intake.health
            taken.add_metric([h.name], h.accepted)
            resends.add_metric([h.name], h.dropped)
            frames.add_metric([h.name], h.received)
            errors.add_metric([h.name], h.errors)
            refused.add_metric([h.name], h.rejected)
            up.add_metric([h.name, h.state], 1 if h.state == "ok" else 0)
        yield from (taken, resends, frames, errors, refused, up)
        pending = p.buffer.pending
        yield GaugeMetricFamily("footfall_agent_buffered_records", "records waiting for upload", value=pending.depth)
        yield GaugeMetricFamily("footfall_agent_buffered_bytes", "bytes waiting for upload", value=pending.bytes)
        stats = p.last_stats
        if stats is not None:
            yield CounterMetricFamily(
                "footfall_agent_dropped_records", "records dropped because the buffer was full (with gap events)",
                value=stats.dropped_records,
            )
            yield CounterMetricFamily(
                "footfall_agent_rejected_records", "records the collector refused as malformed (kept on the gateway)",
                value=stats.rejected,
            )
            yield GaugeMetricFamily(
                "footfall_agent_rejected_parked", "refused records parked on the gateway now (requeue-rejected)",
                value=stats.rejected_parked,
            )
            yield GaugeMetricFamily("footfall_agent_acked_seq", "highest seq the collector acknowledged",
                                    value=stats.acked_seq)
        upload = p.uploader.status if p.uploader else None
        for name, doc, value in (
            ("uploaded_records", "records the collector stored", upload.uploaded_records if upload else 0),
            ("upload_batches", "uploads acknowledged", upload.batches if upload else 0),
            ("upload_retries", "uploads retried", upload.retries if upload else 0),
        ):
            yield CounterMetricFamily(f"footfall_agent_{name}", doc, value=value)
        beat = p.heartbeat.status if p.heartbeat else None
        yield GaugeMetricFamily(
            "footfall_agent_heartbeat_last_success_seconds", "Unix time of the last heartbeat the collector took",
            value=beat.last_success_ms / 1000 if beat else 0,
        )
        yield GaugeMetricFamily(
            "footfall_agent_config_version", "fleet configuration version running (0: the local file)",
            value=p.fleet_state.applied_version,
        )


class MetricsServer:
    """A small HTTP server for `/metrics`."""

    def __init__(self, metrics: AgentMetrics, listen: str) -> None:
        self.metrics = metrics
        self.listen = listen
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind `listen`; OSError when the address is unusable."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_listen(self.listen)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        event(log, "metrics_listening", listen=f"{host}:{self.port}")

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
