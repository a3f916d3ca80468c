"""The agent refuses at intake what the collector would always refuse (protocol/records.py bounds): the device
hears 400 naming the bound, and nothing is written, instead of a reading parked on the gateway for ever."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.clock import Stamp
from footfall.agent.config.sections import HttpPushSection, SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.formats.json import JsonExtractor
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.http_push import HttpPushServer, PushRoute
from footfall.protocol.records import MAX_COUNT, MAX_NAME_CHARS, MAX_RAW_CHARS, Transaction

# Profiles for this test only: a POS that sends its receipt text, and a device that sends running totals.
RECEIPT_PROFILE = """
[profile]
name = "test-json-receipt"
description = "A POS posting each transaction with its receipt text"
format = "json"
reading = "transaction"
[time]
format = "iso8601"
naive = "reject"
[json]
items = ["$"]
[fields]
txn_id = { path = "id" }
at = { path = "at" }
amount = { path = "amount" }
currency = { path = "currency" }
raw = { path = "receipt" }
"""
TOTALS_PROFILE = """
[profile]
name = "test-json-totals"
description = "A counter posting its running totals"
format = "json"
reading = "count"
counter = "cumulative"
[time]
format = "iso8601"
naive = "reject"
[json]
items = ["$"]
[fields]
at = { path = "at" }
entries = { path = "in" }
exits = { path = "out" }
"""


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Agent:
    buffer: Buffer
    server: HttpPushServer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.post(self.url(path), data=json.dumps(body)) as answer:
            return answer.status, json.loads(await answer.text())


def trusted(value: bool) -> Callable[[], Stamp]:
    return lambda: Stamp(int(time.time() * 1000), int(time.monotonic() * 1000), "boot-1", value)


async def start(tmp_path: Path, clock_trusted: bool = True) -> Agent:
    for name, text in (("test-json-receipt", RECEIPT_PROFILE), ("test-json-totals", TOTALS_PROFILE)):
        (tmp_path / "adapters" / name).mkdir(parents=True)
        (tmp_path / "adapters" / name / "profile.toml").write_text(text)
    profiles = load_profiles([tmp_path / "adapters"])
    buffer = Buffer(tmp_path / "buffer.sqlite", max_size=1 << 24, commit_interval=0.05)
    await buffer.open()
    routes = []
    for path, adapter in (("/door", "generic-json-counter"), ("/till", "test-json-receipt"),
                          ("/totals", "test-json-totals")):
        source = SourceConfig(path[1:], "http_push", adapter, options=HttpPushOptions(path))
        intake = SourceIntake(source, profiles[adapter], JsonExtractor(), buffer, stamps=trusted(clock_trusted))
        routes.append(PushRoute(path, "", intake))
    server = HttpPushServer(HttpPushSection(listen="127.0.0.1:0", max_body=1 << 20), routes)
    await server.start()
    return Agent(buffer, server)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    running = await start(tmp_path)
    yield running
    await running.server.stop()
    await running.buffer.close()


def period(start: datetime, **over: Any) -> dict[str, Any]:
    return {"line": "main", "start": iso(start), "end": iso(start + timedelta(minutes=1)), "in": 3, "out": 2, **over}


def sale(**over: Any) -> dict[str, Any]:
    return {"id": "T-1", "at": iso(NOW), "amount": 450, "currency": "EUR", "receipt": "CAFE\nTOTAL 4.50\n", **over}


REFUSED = [
    ("1999", "/door", period(datetime(1999, 12, 31, 23, 0, tzinfo=UTC)), "outside 2000-01-01 to 2100-01-01"),
    ("2098", "/door", period(datetime(2098, 1, 1, tzinfo=UTC)), "the limit is 24 h"),
    ("two days ahead", "/door", period(NOW + timedelta(days=2)), "the limit is 24 h"),
    ("too many people", "/door", period(NOW, **{"in": MAX_COUNT + 1}), f"at most {MAX_COUNT}"),
    ("long line name", "/door", period(NOW, line="l" * (MAX_NAME_CHARS + 1)), f"1-{MAX_NAME_CHARS} printable"),
    ("huge amount", "/till", sale(amount=10**12 + 1), "1000000000000 minor units"),
    ("printer commands", "/till", sale(receipt="\x1b@CAFE\nTOTAL 4.50\n\x1dV\x00"), "U+001B"),
    ("NUL", "/till", sale(receipt="TOTAL\x004.50"), "U+0000"),
    ("long receipt", "/till", sale(receipt="x" * (MAX_RAW_CHARS + 1)), f"the limit is {MAX_RAW_CHARS}"),
    ("total from 2098", "/totals", {"at": iso(datetime(2098, 1, 1, tzinfo=UTC)), "in": 5, "out": 1},
     "the limit is 24 h"),
]


@pytest.mark.parametrize(("path", "body", "bound"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
async def test_a_reading_the_collector_would_refuse_gets_400_naming_the_bound(
    agent: Agent, path: str, body: dict[str, Any], bound: str
) -> None:
    status, answer = await agent.post(path, body)
    assert (status, answer["error"]) == (400, "malformed"), answer
    assert bound in answer["message"] and "nothing was stored" in answer["message"]
    assert await agent.buffer.records() == []


async def test_readings_inside_the_bounds_are_taken_and_line_ends_become_newlines(agent: Agent) -> None:
    assert (await agent.post("/door", period(NOW + timedelta(hours=23))))[0] == 200
    assert (await agent.post("/door", period(NOW, line="l" * MAX_NAME_CHARS)))[0] == 200
    assert (await agent.post("/till", sale(receipt="CAFE\r\n\tCroissant 4.50\r\nTOTAL 4.50\r")))[0] == 200
    receipts = [r for r in await agent.buffer.records() if isinstance(r, Transaction)]
    assert [r.raw for r in receipts] == ["CAFE\n\tCroissant 4.50\nTOTAL 4.50\n"]


async def test_while_the_agents_clock_is_not_trusted_a_device_time_ahead_of_it_is_not_refused(tmp_path: Path) -> None:
    # The agent's own clock may be the wrong one (a gateway booted without RTC): only the fixed bounds apply.
    running = await start(tmp_path, clock_trusted=False)
    try:
        assert (await running.post("/door", period(NOW + timedelta(days=2))))[0] == 200
        status, answer = await running.post("/door", period(datetime(2098, 1, 1, tzinfo=UTC)))
        assert status == 200, answer
        status, answer = await running.post("/door", period(datetime(1999, 12, 31, tzinfo=UTC)))
        assert (status, answer["error"]) == (400, "malformed")
    finally:
        await running.server.stop()
        await running.buffer.close()
