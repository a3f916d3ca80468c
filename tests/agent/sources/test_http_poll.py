"""HTTP poll against a loopback aiohttp device: ETag and If-Modified-Since, auth, garbage, an unreachable device."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from footfall.agent.buffer import Buffer
from footfall.agent.config.transports import HttpPollOptions
from footfall.agent.sources.http_poll import HttpPollSource
from footfall.protocol.records import Count

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import make_intake, records_of, stopped


@dataclass
class Device:
    """A counter's HTTP API: one JSON document, its version, and what requests it saw."""

    body: bytes = b""
    version: int = 1
    validator: str = "etag"
    token: str = "s3cret"
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        status, response = self._answer(request)
        self.statuses.append(status)
        return response

    def _answer(self, request: web.Request) -> tuple[int, web.Response]:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, web.Response(status=401)
        if self.validator == "etag":
            tag = f'"v{self.version}"'
            if request.headers.get("If-None-Match") == tag:
                return 304, web.Response(status=304)
            return 200, web.Response(body=self.body, headers={"ETag": tag}, content_type="application/json")
        modified = f"Sun, 08 Mar 2026 10:0{self.version}:00 GMT"
        if request.headers.get("If-Modified-Since") == modified:
            return 304, web.Response(status=304)
        return 200, web.Response(body=self.body, headers={"Last-Modified": modified}, content_type="application/json")


def counts(*periods: tuple[int, int, int]) -> bytes:
    """A generic-json-counter body."""
    return json.dumps(
        {
            "counts": [
                {"start": f"2026-03-08T10:{m:02d}:00Z", "end": f"2026-03-08T10:{m + 1:02d}:00Z", "in": a, "out": b}
                for m, a, b in periods
            ]
        }
    ).encode()


@pytest.fixture
async def device() -> AsyncIterator[tuple[Device, str]]:
    """The device on a loopback port; yields it and its URL."""
    dev = Device()
    app = web.Application()
    app.router.add_get("/api/counts", dev.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield dev, f"http://127.0.0.1:{port}/api/counts"
    await runner.cleanup()


def poll_options(url: str, **extra: object) -> HttpPollOptions:
    """Fast polling."""
    return HttpPollOptions(url=url, interval=0.05, timeout=2.0, reconnect_min=0.05, reconnect_max=0.2, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
async def test_conditional_polls(device: tuple[Device, str], store: Buffer, validator: str) -> None:
    dev, url = device
    dev.validator = validator
    dev.body = counts((0, 3, 1))
    intake = make_intake(store, "entrance", "http_poll", "generic-json-counter", poll_options(url, token="s3cret"))
    source = HttpPollSource([intake])
    await source.start()
    try:
        await eventually(lambda: dev.statuses.count(304) >= 3, what="unchanged polls answered 304")
        dev.body = counts((0, 3, 1), (1, 2, 2))  # the device's window grows: the old period is resent
        dev.version = 2
        await eventually(lambda: intake.health.accepted == 2, what="the new period")
    finally:
        await stopped(source)
    assert [(c.entries, c.exits) for c in await records_of(store, Count)] == [(3, 1), (2, 2)]
    assert intake.health.dropped == 1, "the re-sent period is dropped"
    assert dev.statuses.count(200) == 2, "only changed documents are transferred"
    header = "If-None-Match" if validator == "etag" else "If-Modified-Since"
    assert header in dev.requests[-1]


async def test_wrong_credentials_and_garbage_are_reported(device: tuple[Device, str], store: Buffer) -> None:
    dev, url = device
    dev.body = b"<html>login</html>"
    intake = make_intake(store, "entrance", "http_poll", "generic-json-counter", poll_options(url, token="wrong"))
    source = HttpPollSource([intake])
    await source.start()
    try:
        await eventually(lambda: "answered 401" in intake.health.last_error, what="the 401")
        assert intake.health.state == "degraded" and "check token" in intake.health.last_error
    finally:
        await stopped(source)
    dev.token = "wrong"
    source = HttpPollSource([intake])
    await source.start()
    try:
        await eventually(lambda: "not JSON" in intake.health.last_error, what="the garbage body")
    finally:
        await stopped(source)
    assert not await records_of(store)


async def test_an_unreachable_device_is_down_and_comes_back(store: Buffer) -> None:
    dev = Device(body=counts((0, 1, 1)))
    app = web.Application()
    app.router.add_get("/api/counts", dev.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()  # the device is off
    intake = make_intake(
        store,
        "entrance",
        "http_poll",
        "generic-json-counter",
        poll_options(f"http://127.0.0.1:{port}/api/counts", token="s3cret"),
    )
    source = HttpPollSource([intake])
    await source.start()
    try:
        await eventually(lambda: intake.health.state == "down", what="the device down")
        assert "GET http://127.0.0.1" in intake.health.last_error
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await eventually(lambda: intake.health.accepted == 1, what="the device back")
    finally:
        await stopped(source)
        await runner.cleanup()
