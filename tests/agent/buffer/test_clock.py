"""Guarantee 8 (agent/buffer/held.py): readings timed by an untrusted clock are held, then
re-stamped exactly or flagged suspect; gap events are never held; dedupe keys outlive the sync.

The first tests run the agent's clock (agent/clock.py) with an injected clock source (boot
before the build date, NTP's first sync, a reboot before it, steps while running); readings go
through the real http_push server, the real buffer and upload to the scripted collector. The
last two place held readings directly (`held.place`, no database).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from footfall.agent.buffer import Buffer, writer
from footfall.agent.buffer.held import Held, place
from footfall.agent.clock import AgentClock, ClockSettings, Stamp, Trust
from footfall.agent.config.load import load_config
from footfall.agent.decode.counters import CounterPolicy, take
from footfall.agent.identity import enroll
from footfall.agent.pipeline import Pipeline
from footfall.agent.status import render
from footfall.protocol.records import Count, Record, SensorEvent

from tests.agent.buffer.helpers import count, covered, untrusted_stamps
from tests.agent.conftest import eventually
from tests.agent.peer import PeerCollector
from tests.agent.test_clock import YEAR_S, FakeClocks

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
    monkeypatch.setattr(writer, "PRUNE_EVERY_S", 0.0)
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


async def test_gap_events_are_not_held_while_the_clock_is_untrusted(tmp_path: Path) -> None:
    # A gap says which seqs were lost, which needs no clock: held like agent-timed readings, it would
    # stay on the gateway for as long as the clock is untrusted (for ever, without NTP and with a clock
    # the collector disagrees with) while the readings after the loss reach the collector. It goes at
    # once, its time flagged suspect.
    limit = 40_000
    path = tmp_path / "b.sqlite"
    async with Buffer(path, max_size=limit, commit_interval=0, stamps=untrusted_stamps) as buffer:
        for round_ in range(6):
            await buffer.append([count(round_ * 100 + i) for i in range(100)])
        stats = await buffer.stats()
        assert stats.gap_events >= 1
        assert await buffer.held() == [], "nothing of the loss waits for the clock"
        records = await buffer.records()
        gaps = [r for r in records if isinstance(r, SensorEvent) and r.kind == "gap"]
        assert gaps and all(g.clock == "suspect" for g in gaps)
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == covered(records)
        next_seq = stats.next_seq

    # A damaged file moved aside: the loss it reports does not wait for the clock either.
    with path.open("r+b") as damaged:
        damaged.write(bytes(100))
    async with Buffer(path, max_size=limit, commit_interval=0, stamps=untrusted_stamps) as buffer:
        assert await buffer.held() == []
        (gap,) = [r for r in await buffer.records() if isinstance(r, SensorEvent) and r.kind == "gap"]
        assert (gap.lost_first, gap.clock) == (1, "suspect") and gap.lost_last >= next_seq - 1


def test_held_readings_of_the_trusted_boot_move_by_the_step_exactly_and_still_join() -> None:
    # Boot "b": the clock read 5 years early, then NTP stepped it. Two periods taken before the step
    # (their offsets differ by a millisecond of rounding) and one after it (no shift needed).
    early, rounding, right = -5 * YEAR_S * 1000, -5 * YEAR_S * 1000 + 1, 0
    held = [
        Held("b", early, 10, Count("door", "main", 1_000, 61_000, 1, 0)),
        Held("b", rounding, 20, Count("door", "main", 61_000, 121_000, 2, 0)),
        Held("b", right, 30, Count("door", "main", 1_700_000_000_000, 1_700_000_060_000, 3, 0)),
    ]
    stamp = Stamp(wall_ms=1_700_000_100_000, mono_ms=1_700_000_100_000, boot_id="b", trusted=True)
    placed = place(held, Trust(True, "synced", "ntp", "b", 0), stamp, wall_high_ms=0)
    moved = [record for record, _ in placed.records]
    assert [r.start_ms for r in moved[:2]] == [1_000 + 5 * YEAR_S * 1000, 61_000 + 5 * YEAR_S * 1000]
    assert moved[0].end_ms == moved[1].start_ms, "one stretch of the clock moves by one shift: periods still join"
    assert moved[2] == replace(held[2].record, clock="restamped"), "taken after the step: times untouched"
    assert [taken for _, taken in placed.records] == [10, 20, 30]
    assert (placed.restamped, placed.suspect, placed.boots, placed.readings) == (3, 0, 0, 3)


def test_an_earlier_boots_readings_go_after_the_last_trusted_commit_and_before_this_boot_flagged_suspect() -> None:
    # Boot "a" never had a trusted clock; its monotonic time is all that is known of its readings.
    held = [
        Held("a", 0, 1, Count("door", "main", 10_000, 70_000, 1, 0)),
        Held("a", 0, 2, Count("door", "main", 70_000, 130_000, 2, 0)),
        Held("b", 0, 3, Count("door", "main", 5_000, 65_000, 4, 0)),
    ]
    wall_high_ms = 1_700_000_000_000
    this_boot_start = 1_700_000_500_000
    stamp = Stamp(wall_ms=this_boot_start + 20_000, mono_ms=20_000, boot_id="b", trusted=True)
    placed = place(held, Trust(True, "synced", "ntp", "b", this_boot_start), stamp, wall_high_ms)
    (same_boot, _), *earlier = placed.records
    assert same_boot.clock == "restamped" and same_boot.start_ms == this_boot_start + 5_000
    assert [r.clock for r, _ in earlier] == ["suspect", "suspect"]
    assert earlier[0][0].start_ms >= wall_high_ms, "not before the last trusted commit"
    assert earlier[-1][0].end_ms <= this_boot_start, "not after this boot began"
    assert earlier[0][0].end_ms == earlier[1][0].start_ms, "its periods keep their spacing"
    assert (placed.restamped, placed.suspect, placed.boots) == (1, 2, 1)
    assert "2 records of 1 earlier boot(s) never had a trusted clock: suspect" in placed.detail("ntp")
