"""The agent's clock (agent/clock.py) with an injected clock source: boot before the build date, NTP's
first sync, a reboot before it, and steps while running. Readings go through the real http_push
server, the real buffer and upload to the scripted collector."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from footfall.agent import buffer as buffer_module
from footfall.agent.buffer import Buffer
from footfall.agent.clock import AgentClock, ClockSettings, ClockSource
from footfall.agent.config.load import load_config
from footfall.agent.decode.counters import CounterPolicy, take
from footfall.agent.identity import enroll
from footfall.agent.pipeline import Pipeline
from footfall.agent.status import render
from footfall.protocol.records import Count, Record, SensorEvent

from tests.agent.conftest import eventually
from tests.agent.peer import PeerCollector

YEAR_S = 365 * 86400
POLLED_PROFILE = """
[profile]
name = "polled-totals"
description = "running totals without a time: the agent times each reading"
format = "json"
reading = "count"
counter = "cumulative"

[time]
source = "agent"

[fields]
entries = { path = "in" }
exits = { path = "out" }
"""


@dataclass
class FakeClocks:
    """Wall = real time + `offset_s`; monotonic = real monotonic + `mono_base` (a reboot restarts it)."""

    offset_s: float = 0.0
    mono_base: float = 0.0
    boot: str = "boot-1"
    synced: bool | None = False

    def source(self) -> ClockSource:
        return ClockSource(
            wall=lambda: time.time() + self.offset_s,
            mono=lambda: time.monotonic() + self.mono_base,
            boot_id=lambda: self.boot,
            synced=lambda: self.synced,
        )

    def reboot(self, boot: str) -> None:
        self.boot = boot
        self.mono_base = 5.0 - time.monotonic()  # "up for 5 s"


def test_when_the_clock_is_trusted() -> None:
    fake = FakeClocks(offset_s=-5 * YEAR_S, synced=True)
    clock = AgentClock(ClockSettings(), fake.source())
    assert clock.start().reason == "before_build", "synced or not, a clock before the build date is wrong"
    fake.offset_s = 0
    assert clock.check() and clock.trust.source == "ntp"

    fake.synced = False
    clock = AgentClock(ClockSettings(), fake.source())
    assert not clock.start().trusted and clock.trust.reason == "not_synchronized"
    now = time.time()
    clock.observe_collector(now + 3600, now, now)
    assert clock.trust.reason == "disagrees_with_collector" and clock.skew_s is not None and clock.skew_s < -3000
    clock.observe_collector(int(now), now, now)
    assert clock.trust.trusted and clock.trust.source == "collector"
    assert clock.stamp().trusted
    fake.offset_s = 5.0  # someone runs `date -s`
    assert not clock.stamp().trusted, "a stamp right after a step is untrusted before anyone has noticed"
    assert not clock.check() and clock.trust.reason == "stepped"
    fake.offset_s = 0
    clock.observe_collector(int(time.time()), time.time(), time.time())
    assert clock.trust.trusted

    again = AgentClock(ClockSettings(), fake.source())
    assert again.start(saved=clock.saved_state()).source == "continued", "same boot, same offset: still trusted"
    fake.reboot("boot-2")
    rebooted = AgentClock(ClockSettings(), fake.source())
    assert not rebooted.start(saved=clock.saved_state()).trusted

    lax = AgentClock(ClockSettings(require_sync=False), fake.source())
    assert lax.start(wall_high_ms=int(time.time() * 1000) - 1000).source == "plausible"
    behind = AgentClock(ClockSettings(require_sync=False), fake.source())
    assert behind.start(wall_high_ms=int(time.time() * 1000) + 3_600_000).reason == "behind_last_reading"


@dataclass
class Store:
    """An enrolled in-process agent with a polled counter (agent-timed) and a device-timed counter."""

    tmp: Path
    peer: PeerCollector
    fake: FakeClocks
    pipeline: Pipeline | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    port: int = 0

    async def start(self) -> Pipeline:
        adapters = self.tmp / "adapters" / "polled-totals"
        adapters.mkdir(parents=True, exist_ok=True)
        (adapters / "profile.toml").write_text(POLLED_PROFILE)
        path = self.tmp / "agent.toml"
        path.write_text(
            '[agent]\nstate_dir = "state"\nadapter_dirs = ["adapters"]\n[buffer]\ncommit_interval = "10ms"\n'
            '[upload]\nmax_age = "20ms"\nbackoff_initial = "20ms"\nbackoff_max = "100ms"\n'
            '[http_push]\nlisten = "127.0.0.1:0"\n'
            '[[sources]]\nname = "gate"\ntransport = "http_push"\nadapter = "polled-totals"\npath = "/gate"\n'
            '[[sources]]\nname = "entrance"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
            'path = "/entrance"\n'
        )
        config = load_config(path)
        if not (config.agent.state_dir / "identity.json").exists():
            await enroll(config.agent.state_dir, self.peer.url, "ffe_test")
        self.stop = asyncio.Event()
        self.pipeline = Pipeline(config, clock_source=self.fake.source())
        self.task = asyncio.create_task(self.pipeline.run(self.stop))
        pipeline = self.pipeline
        await eventually(lambda: getattr(pipeline.sources.get("http_push"), "port", 0) > 0, what="the agent to serve")
        self.port = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
        return pipeline

    async def halt(self) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task

    async def push(self, path: str, body: dict[str, Any]) -> None:
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{self.port}{path}", json=body
        ) as response:
            assert response.status == 200, await response.text()

    async def totals(self, entries: int, exits: int) -> None:
        await self.push("/gate", {"in": entries, "out": exits})


@pytest.fixture
async def store(tmp_path: Path, peer: PeerCollector) -> AsyncIterator[Callable[[FakeClocks], Store]]:
    made: list[Store] = []

    def make(fake: FakeClocks) -> Store:
        made.append(Store(tmp_path, peer, fake))
        return made[-1]

    yield make
    for each in made:
        if each.task is not None and not each.task.done():
            await each.halt()


def counts(records: list[Record], sensor: str = "gate") -> list[Count]:
    return sorted((r for r in records if isinstance(r, Count) and r.sensor == sensor), key=lambda c: c.start_ms)


async def test_readings_timed_before_ntp_sync_are_held_then_restamped_exactly(
    store: Callable[[FakeClocks], Store], peer: PeerCollector
) -> None:
    fake = FakeClocks(offset_s=-5 * YEAR_S)
    agent = store(fake)
    pipeline = await agent.start()
    assert pipeline.agent_clock.trust.reason == "before_build"
    for entries in (100, 110, 125):
        await agent.totals(entries, 7)
    await agent.push("/entrance", {"start": "2026-03-08T10:00:00Z", "end": "2026-03-08T10:01:00Z", "in": 4, "out": 1})
    held = [r for _, _, r in await pipeline.buffer.held()]
    assert [(c.entries, c.clock) for c in counts(held)] == [(10, "ok"), (15, "ok")]
    shown = render({**await pipeline.status(), "problems": []})
    assert "clock: NOT trusted (before_build): the clock reads 2021-" in shown
    assert "readings HELD until the clock is trusted" in shown
    await eventually(lambda: any(isinstance(r, Count) and r.sensor == "entrance" for r in peer.accepted),
                     what="the device-timed reading to go up at once")
    assert not counts(peer.accepted), "nothing timed by a wrong clock was uploaded"
    assert pipeline.agent_clock.trust.reason == "before_build"

    fake.offset_s = 0  # NTP's first sync steps the clock by five years
    fake.synced = True
    await eventually(lambda: len(counts(peer.accepted)) == 2, what="the held readings, re-stamped")
    await agent.halt()
    shift = 5 * YEAR_S * 1000
    restamped = counts(peer.accepted)
    for before, after in zip(counts(held), restamped, strict=True):
        assert after.clock == "restamped"
        assert abs(after.start_ms - before.start_ms - shift) <= 2 and abs(after.end_ms - before.end_ms - shift) <= 2
    assert restamped[0].end_ms == restamped[1].start_ms, "the periods still join"
    assert abs(restamped[1].end_ms - time.time() * 1000) < 60_000
    events = [r.detail for r in peer.accepted if isinstance(r, SensorEvent) and r.kind == "clock"]
    assert any("before this agent was built" in d for d in events)
    assert any("re-stamped 3 held records" in d for d in events), events  # 2 readings and the clock event
    entrance = [r for r in peer.accepted if isinstance(r, Count) and r.sensor == "entrance"]
    assert [c.clock for c in entrance] == ["ok"], "a device's own time is never touched"


async def test_readings_of_a_boot_that_never_synced_are_sent_flagged_suspect(
    store: Callable[[FakeClocks], Store], peer: PeerCollector
) -> None:
    fake = FakeClocks(offset_s=-5 * YEAR_S)
    first = store(fake)
    await first.start()
    for entries in (10, 12, 15):
        await first.totals(entries, 0)
    await first.halt()  # the power goes; the gateway reboots, still without a good clock

    fake.reboot("boot-2")
    second = store(fake)
    pipeline = await second.start()
    await second.totals(21, 0)  # across the reboot: no common monotonic clock
    await second.totals(30, 0)
    fake.offset_s = 0
    fake.synced = True
    await eventually(lambda: len(counts(peer.accepted)) == 4, what="every held reading to go up")
    await second.halt()
    got = counts(peer.accepted)
    assert [(c.entries, c.clock) for c in got] == [(2, "suspect"), (3, "suspect"), (6, "suspect"), (9, "restamped")]
    boot_start_ms = (time.time() - (time.monotonic() + fake.mono_base)) * 1000
    assert got[1].end_ms <= boot_start_ms + 2, "the earlier boot is placed before this one began"
    assert all(c.start_ms >= pipeline.agent_clock.settings.not_before_ms for c in got)
    assert all(c.end_ms > c.start_ms for c in got)
    assert sum(c.entries for c in got) == 30 - 10, "no people lost or doubled across the reboot"


async def test_a_clock_step_while_running_never_stretches_reverses_or_repeats_a_period(
    store: Callable[[FakeClocks], Store], peer: PeerCollector
) -> None:
    fake = FakeClocks(synced=True)
    agent = store(fake)
    pipeline = await agent.start()

    async def settled() -> bool:
        return not await pipeline.buffer.held()

    for entries, step in ((0, 0), (5, 0), (9, 3600), (12, 0), (20, -7200), (21, 0)):
        fake.offset_s += step  # readings right after a step are held until the step is noticed, then re-stamped
        await agent.totals(entries, 0)
        if step:
            await eventually(settled, what="the step to be noticed and the held reading re-stamped")
    await eventually(lambda: len(counts(peer.accepted)) == 5, what="five periods")
    await agent.halt()
    by_delta = {c.entries: c for c in counts(peer.accepted)}
    assert sorted(by_delta) == [1, 3, 4, 5, 8] and sum(by_delta) == 21, "every person counted once"
    for c in by_delta.values():
        assert 0 < c.end_ms - c.start_ms < 30_000, f"a period no longer than the time between two polls: {c}"
    assert by_delta[3].start_ms == by_delta[4].end_ms and by_delta[1].start_ms == by_delta[8].end_ms, (
        "without a step in between, a period starts where the previous one ended"
    )


async def test_dedupe_keys_taken_on_a_wrong_clock_outlive_the_sync(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(buffer_module, "PRUNE_EVERY_S", 0.0)
    fake = FakeClocks(offset_s=-50 * YEAR_S)  # a gateway that boots in 1976
    clock = AgentClock(ClockSettings(), fake.source())
    clock.start()
    period = Count("door", "main", 1_795_000_000_000, 1_795_000_060_000, 3, 1)
    policy = CounterPolicy(keep_ms=7 * 86_400_000)
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0, stamps=clock.stamp) as buffer:
        first = await buffer.write(lambda txn: take(txn, [period], policy))
        assert first.records == 1
        fake.offset_s = 0
        fake.synced = True
        assert clock.check()
        await buffer.restamp(clock.trust, clock.stamp())
        await buffer.append([Count("door", "main", 1, 2, 0, 0)])  # a commit that prunes expired keys
        resent = await buffer.write(lambda txn: take(txn, [period], policy))
    assert resent.duplicates == 1, "the device's resend after the sync is still recognised"
