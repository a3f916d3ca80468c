"""The agent's fleet side in-process, against a real collector: a heartbeat that hangs never holds up
uploads, a configuration that cannot start is rolled back with the old one still serving, and the agent's
Prometheus endpoint."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from footfall.agent.config.load import load_config
from footfall.agent.fleet_config import ConfigRefused
from footfall.agent.identity import enroll
from footfall.agent.pipeline import Pipeline

from tests.agent.conftest import eventually
from tests.fixtures.collector import RunningCollector


def config_text(collector_url: str, *, listen: str = "127.0.0.1:0", extra: str = "") -> str:
    return (
        f'[agent]\nstate_dir = "state"\n[collector]\nurl = "{collector_url}"\ntimeout = "1s"\n'
        '[buffer]\ncommit_interval = "20ms"\n[upload]\nmax_age = "20ms"\nbackoff_initial = "20ms"\n'
        f'backoff_max = "200ms"\n[heartbeat]\ninterval = "100ms"\n[http_push]\nlisten = "{listen}"\n{extra}'
        '[[sources]]\nname = "entrance"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
        'path = "/push/entrance"\n'
    )


def period(minute: int) -> dict[str, Any]:
    return {"start": f"2026-03-08T10:{minute:02d}:00Z", "end": f"2026-03-08T10:{minute + 1:02d}:00Z",
            "in": 1, "out": 1}


async def push(port: int, minute: int) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/push/entrance", json=period(minute)
    ) as response:
        return response.status


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Pipeline], Awaitable[None]]]:
    """Run pipelines in the background; each is stopped at the end."""
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(pipeline: Pipeline) -> None:
        stop = asyncio.Event()
        started.append((stop, asyncio.create_task(pipeline.run(stop))))
        # A source starts under its supervisor: its port is known once it serves.
        await eventually(lambda: getattr(pipeline.sources.get("http_push"), "port", 0) > 0, what="the agent to serve")

    yield start
    for stop, task in started:
        stop.set()
        await task


async def enrolled(tmp_path: Path, collector: RunningCollector, url: str, **kwargs: Any) -> Pipeline:
    path = tmp_path / "agent.toml"
    path.write_text(config_text(url, **kwargs))
    config = load_config(path)
    org = await collector.create_org()
    site = await collector.create_site(org)
    await enroll(config.agent.state_dir, url, await collector.create_token(site, org))
    return Pipeline(config)


async def test_a_hanging_heartbeat_never_holds_up_uploads(
    tmp_path: Path, collector: RunningCollector, running: Callable[[Pipeline], Awaitable[None]]
) -> None:
    # A front that passes everything to the collector except heartbeats, which it never answers.
    release = asyncio.Event()
    hung = 0

    async def forward(request: web.Request) -> web.StreamResponse:
        nonlocal hung
        if request.path.startswith("/v1/agents/heartbeat"):
            hung += 1
            await release.wait()
        body = await request.read()
        async with collector.session.request(request.method, collector.url + request.path_qs, data=body,
                                             headers=request.headers) as answer:
            return web.Response(status=answer.status, body=await answer.read(), headers=answer.headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        pipeline = await enrolled(tmp_path, collector, url)
        await running(pipeline)
        port = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
        for minute in range(10):
            assert await push(port, minute) == 200
        await eventually(lambda: pipeline.buffer.pending.depth == 0, what="uploads to go through")
        assert await collector.value("SELECT count(*) FROM people_counts") == 10
        assert pipeline.heartbeat is not None
        await eventually(lambda: pipeline.heartbeat is not None and pipeline.heartbeat.status.skipped >= 2,
                         what="heartbeats to time out and be skipped")
        assert pipeline.heartbeat.status.state == "failing" and hung >= 2
        assert "cannot reach the collector" in pipeline.heartbeat.status.last_error
    finally:
        release.set()
        await runner.cleanup()


async def test_a_config_that_cannot_start_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, collector: RunningCollector, running: Callable[[Pipeline], Awaitable[None]]
) -> None:
    pipeline = await enrolled(tmp_path, collector, collector.url, extra='[metrics]\nlisten = "127.0.0.1:0"\n')
    await running(pipeline)
    port = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
    assert await push(port, 0) == 200
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        new = tmp_path / "new.toml"
        new.write_text(config_text(collector.url, listen=f"127.0.0.1:{busy}"))
        with pytest.raises(ConfigRefused, match="could not start"):
            await pipeline.reconfigure(load_config(new))
    port = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
    assert await push(port, 1) == 200, "the previous configuration serves again"
    await eventually(lambda: pipeline.buffer.pending.depth == 0, what="uploads to go on")
    assert await collector.value("SELECT count(*) FROM people_counts") == 2
    assert pipeline.config.http_push.listen == "127.0.0.1:0"

    assert pipeline.metrics_server is not None
    text = ""

    async def uploads_counted() -> bool:
        nonlocal text
        assert pipeline.metrics_server is not None
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{pipeline.metrics_server.port}/metrics"
        ) as response:
            text = await response.text()
        return "footfall_agent_uploaded_records_total 2.0" in text

    # The upload counter moves just after the buffer's ack: scrape until it has.
    await eventually(uploads_counted, what="the metrics to count both uploads")
    assert 'footfall_agent_records_taken_total{source="entrance"} 2.0' in text
    assert 'footfall_agent_upload_seconds_count{outcome="2xx"}' in text
    assert "footfall_agent_buffered_records 0.0" in text
    assert 'footfall_agent_source_up{source="entrance",state="ok"} 1.0' in text
