"""http_push over real HTTP on 127.0.0.1: a device's 200 means committed; a 400 changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import HttpPushSection, SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.formats.json import JsonExtractor
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import SourceError
from footfall.agent.sources.http_push import HttpPushServer, PushRoute

PERIOD = {"line": "main", "start": "2026-03-08T10:00:00Z", "end": "2026-03-08T10:01:00Z", "in": 3, "out": 2}
SALE = {"terminal": "pos-1", "id": "T-1", "at": "2026-03-08T10:00:00Z", "amount": 1250, "currency": "EUR"}


@dataclass
class Agent:
    buffer: Buffer
    server: HttpPushServer
    door: SourceIntake
    till: SourceIntake

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


def snapshot(path: Path) -> dict[str, Any]:
    """Everything a write could change, read by another connection."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("records", "meta", "state", "seen")
        }
    finally:
        conn.close()


async def start(tmp_path: Path, *, max_body: int = 1 << 20, commit_interval: float = 0.3) -> Agent:
    buffer = Buffer(tmp_path / "buffer.sqlite", max_size=1 << 24, commit_interval=commit_interval)
    await buffer.open()
    profiles = load_profiles()
    door = SourceIntake(
        SourceConfig("door", "http_push", "generic-json-counter", options=HttpPushOptions("/push/door")),
        profiles["generic-json-counter"],
        JsonExtractor(),
        buffer,
    )
    till = SourceIntake(
        SourceConfig("till", "http_push", "generic-json-pos", options=HttpPushOptions("/push/pos", token="s3cret")),
        profiles["generic-json-pos"],
        JsonExtractor(),
        buffer,
    )
    server = HttpPushServer(
        HttpPushSection(listen="127.0.0.1:0", max_body=max_body),
        [PushRoute("/push/door", "", door), PushRoute("/push/pos", "s3cret", till)],
    )
    await server.start()
    return Agent(buffer, server, door, till)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    running = await start(tmp_path)
    yield running
    await running.server.stop()
    await running.buffer.close()


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        return response.status, json.loads(await response.text())


async def test_the_device_gets_200_only_once_its_readings_are_committed(agent: Agent) -> None:
    status, body = await post(agent.url("/push/door"), {"counts": [PERIOD, {**PERIOD, "line": "side"}]})
    assert (status, body) == (200, {"accepted": 2, "duplicates": 0, "records": 2})
    # Read by another connection right after the answer: the commit window is 0.3 s, so an
    # answer sent before the commit would find nothing here.
    rows = snapshot(agent.buffer.path)["records"]
    assert [row[0] for row in rows] == [1, 2]


async def test_a_resend_is_answered_200_and_dropped(agent: Agent) -> None:
    await post(agent.url("/push/door"), PERIOD)
    assert await post(agent.url("/push/door"), PERIOD) == (200, {"accepted": 0, "duplicates": 1, "records": 0})
    assert agent.door.health.received == 2 and agent.door.health.accepted == 1 and agent.door.health.dropped == 1


async def test_a_malformed_body_gets_400_with_the_reason_and_changes_nothing(agent: Agent) -> None:
    await post(agent.url("/push/door"), PERIOD)
    before = snapshot(agent.buffer.path)
    good_and_bad = {
        "counts": [{**PERIOD, "start": "2026-03-08T10:05:00Z", "end": "2026-03-08T10:06:00Z"}, {**PERIOD, "in": -4}]
    }
    status, body = await post(agent.url("/push/door"), good_and_bad)
    assert status == 400
    assert body["error"] == "malformed"
    assert "counts[1].in: must be a whole number >= 0, got -4" in body["message"]
    assert "nothing was stored" in body["message"]
    status, body = await post(agent.url("/push/door"), b"\xff\xfe not json")
    assert status == 400 and "not UTF-8" in body["message"]
    assert snapshot(agent.buffer.path) == before, "a refused frame must change nothing, not even dedupe keys"
    assert agent.door.health.state == "degraded" and agent.door.health.errors == 2
    assert agent.door.health.last_error_stage == "decoding"


async def test_a_source_with_a_token_refuses_requests_without_it(agent: Agent) -> None:
    status, body = await post(agent.url("/push/pos"), SALE)
    assert status == 401 and body["error"] == "unauthorized"
    status, body = await post(agent.url("/push/pos"), SALE, {"Authorization": "Bearer s3cret"})
    assert (status, body["accepted"]) == (200, 1)


async def test_a_body_over_the_limit_gets_413(tmp_path: Path) -> None:
    running = await start(tmp_path, max_body=1024)
    try:
        status, body = await post(running.url("/push/door"), {"counts": [PERIOD] * 100})
        assert status == 413 and "over 1024 bytes" in body["message"]
        assert snapshot(running.buffer.path)["records"] == []
    finally:
        await running.server.stop()
        await running.buffer.close()


async def test_a_buffer_that_cannot_commit_gets_503_with_retry_after(agent: Agent) -> None:
    await post(agent.url("/push/door"), PERIOD)
    pages = await agent.buffer._submit(lambda c: c.execute("PRAGMA page_count").fetchone()[0], write=False)
    await agent.buffer._submit(lambda c: c.execute(f"PRAGMA max_page_count = {pages}").fetchone(), write=False)
    many = {"counts": [{**PERIOD, "line": f"line-{i}"} for i in range(300)]}
    async with aiohttp.ClientSession() as session, session.post(agent.url("/push/door"), json=many) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
    assert agent.door.health.last_error_stage == "buffering"
    await agent.buffer._submit(lambda c: c.execute("PRAGMA max_page_count = 1000000").fetchone(), write=False)
    assert (await post(agent.url("/push/door"), many))[0] == 200


async def test_a_busy_port_is_a_clear_start_error(agent: Agent, tmp_path: Path) -> None:
    other = HttpPushServer(HttpPushSection(listen=f"127.0.0.1:{agent.server.port}"), [PushRoute("/x", "", agent.door)])
    with pytest.raises(SourceError, match=f"http_push cannot listen on 127.0.0.1:{agent.server.port}"):
        await other.start()
    assert agent.door.health.state == "down"


async def raw_post(port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 POST written byte for byte (HTTP clients refuse to send non-ASCII header bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        head += b"Content-Type: application/json\r\n" + b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    try:
        return int(status_line.split()[1]), json.loads(payload)
    except ValueError:
        return int(status_line.split()[1]), {"error": payload.decode(errors="replace")}


NOT_UTF8 = [b"Bearer s3cr\xe9t", b"Bearer \xff\xfe\x80", b"\xc3\x28", b"Bearer s3cret\xff"]


async def test_an_authorization_header_that_is_not_utf8_gets_401_not_500(agent: Agent) -> None:
    for value in NOT_UTF8:
        sale = json.dumps(SALE).encode()
        status, body = await raw_post(agent.server.port, "/push/pos", [(b"Authorization", value)], sale)
        assert (status, body["error"]) == (401, "unauthorized"), value
    assert agent.till.health.accepted == 0 and agent.till.health.errors == len(NOT_UTF8)
    status, body = await raw_post(
        agent.server.port, "/push/pos", [(b"Authorization", b"Bearer s3cret")], json.dumps(SALE).encode()
    )
    assert (status, body["accepted"]) == (200, 1), "the server still serves"


async def test_signature_headers_that_are_not_utf8_get_401_not_500(tmp_path: Path) -> None:
    buffer = Buffer(tmp_path / "buffer.sqlite", max_size=1 << 24, commit_interval=0.01)
    await buffer.open()
    profiles = load_profiles()
    routes = []
    for adapter, header, params in (
        ("square-webhook", b"X-Square-HmacSha256-Signature", {}),
        ("lightspeed-webhook", b"X-Signature", {"currency": "EUR"}),
    ):
        options = HttpPushOptions(f"/push/{adapter}", secret="k3y")
        source = SourceConfig(adapter, "http_push", adapter, options=options, params=params)
        intake = SourceIntake(source, profiles[adapter], default_extractors()[profiles[adapter].format], buffer)
        routes.append((PushRoute(options.path, "", intake), header))
    server = HttpPushServer(HttpPushSection(listen="127.0.0.1:0"), [route for route, _ in routes])
    await server.start()
    try:
        for route, header in routes:
            for value in NOT_UTF8:
                status, body = await raw_post(server.port, route.path, [(header, value)], b'{"x": 1}')
                assert (status, body["error"]) == (401, "bad_signature"), (route.path, value)
        assert await buffer.records() == []
    finally:
        await server.stop()
        await buffer.close()
