"""Properties of the counter arithmetic through the whole intake (profile, extraction, buffer), with restarts.

A simulated device writes running totals as JSON; hypothesis chooses when people come, when the
counter wraps or the device reboots, which bodies it sends twice, and when the agent restarts
(the buffer is closed and opened again, so every bit of counter state is reloaded from the
SQLite file). Whatever it chooses, the counts stored add up to exactly the people the device
saw after its first (baseline) reading (for a counter since local midnight, since that
midnight), and no count is negative; filed at the push (`delta_at = "end"`), every person is
in a count that ends at a reading, and the quiet spells between readings are covered by zeros.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile import Profile
from footfall.agent.decode.profile_load import parse_profile
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from footfall.protocol.records import Count, Record, SensorEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARIS = ZoneInfo("Europe/Paris")


def profile(counter: str, modulus: int = 0, delta_at: str = "start") -> Profile:
    data: dict[str, Any] = {
        "profile": {"name": "sim", "format": "json", "reading": "count", "counter": counter, "delta_at": delta_at},
        "time": {"format": "iso8601"},
        "fields": {"at": {"path": "at"}, "entries": {"path": "in"}, "exits": {"path": "out"}},
    }
    if modulus:
        data["profile"]["modulus"] = modulus
    return parse_profile(data, where="sim", extractors=default_extractors())


def body(at: datetime, entries: int, exits: int) -> bytes:
    return json.dumps({"at": at.isoformat(), "in": entries, "out": exits}).encode()


def run(prof: Profile, deliveries: list[tuple[bytes, bool]]) -> list[Record]:
    """Deliver each body through a real intake and buffer; `True` restarts the agent before that body."""

    async def scenario() -> list[Record]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "buffer.sqlite"
            source = SourceConfig("door", "http_push", "sim", options=HttpPushOptions("/p"))
            buffer = Buffer(path, max_size=1 << 30, commit_interval=0)
            await buffer.open()
            try:
                intake = SourceIntake(source, prof, default_extractors()["json"], buffer, zone=PARIS)
                for payload, restart in deliveries:
                    if restart:
                        await buffer.close()
                        buffer = Buffer(path, max_size=1 << 30, commit_interval=0)
                        await buffer.open()
                        intake = SourceIntake(source, prof, default_extractors()["json"], buffer, zone=PARIS)
                    await intake(Frame("door", payload, 0))
                return await buffer.records()
            finally:
                await buffer.close()

    return asyncio.run(scenario())


def counts_of(records: list[Record]) -> list[Count]:
    return [r for r in records if isinstance(r, Count)]


STEP = st.tuples(
    st.integers(0, 60),  # people in
    st.integers(0, 60),  # people out
    st.booleans(),  # the device reboots just before this reading
    st.booleans(),  # the body is sent twice
    st.booleans(),  # the agent restarts before it arrives
)


@PROPERTY
@given(
    modulus=st.sampled_from([0, 256, 65536, 4294967296]),
    start=st.integers(0, 2**32 - 1),
    steps=st.lists(STEP, min_size=1, max_size=25),
)
def test_cumulative_totals_with_wraps_resets_resends_and_restarts(
    modulus: int, start: int, steps: list[tuple[int, int, bool, bool, bool]]
) -> None:
    at = datetime(2026, 3, 8, 9, 0, tzinfo=PARIS)
    value = [start % (modulus or 2**62), (start // 7) % (modulus or 2**62)]
    deliveries = [(body(at, *value), False)]
    truth, resets = [0, 0], 0
    for minute, (more_in, more_out, reboot, twice, restart) in enumerate(steps, start=1):
        more = [more_in, more_out]
        # A reboot is only visible when both totals drop below where they were (and not by a wrap's amount).
        visible = reboot and all(
            m < v and (not modulus or v - m <= modulus // 2) for m, v in zip(more, value, strict=True)
        )
        for ch in (0, 1):
            value[ch] = more[ch] if visible else value[ch] + more[ch]
            if modulus:
                value[ch] %= modulus
            truth[ch] += more[ch]
        resets += visible
        payload = body(at + timedelta(minutes=minute), *value)
        deliveries += [(payload, restart)] + ([(payload, False)] if twice else [])
    records = run(profile("cumulative", modulus), deliveries)
    counts = counts_of(records)
    assert all(c.entries >= 0 and c.exits >= 0 for c in counts)
    assert [sum(c.entries for c in counts), sum(c.exits for c in counts)] == truth
    assert len(counts) == len(steps), "one count per new reading, none for a resend"
    assert sum(1 for r in records if isinstance(r, SensorEvent) and r.kind == "counter_reset") == resets


@PROPERTY
@given(
    start=st.sampled_from(
        [datetime(2026, 3, 28, 18, 0, tzinfo=PARIS), datetime(2026, 10, 24, 18, 0, tzinfo=PARIS),
         datetime(2026, 6, 1, 20, 0, tzinfo=PARIS)]
    ),
    first=st.tuples(st.integers(0, 500), st.integers(0, 500)),
    steps=st.lists(st.tuples(st.integers(1, 600), STEP), min_size=1, max_size=30),
    delta_at=st.sampled_from(["start", "end"]),
)
def test_daily_totals_across_midnights_and_dst_days_with_reboots_resends_and_restarts(
    start: datetime, first: tuple[int, int], steps: list[tuple[int, tuple[int, int, bool, bool, bool]]], delta_at: str
) -> None:
    """A counter of the day's totals (restarting at local midnight) read every 1-600 minutes around DST changes."""
    at = start
    value = list(first)
    deliveries = [(body(at, *value), False)]
    readings = {int(at.timestamp() * 1000)}
    # The first reading's totals are the day's since midnight: they count too.
    truth, resets = list(first), 0
    for gap, (more_in, more_out, reboot, twice, restart) in steps:
        before = at
        at = (at.astimezone(ZoneInfo("UTC")) + timedelta(minutes=gap)).astimezone(PARIS)
        more = [more_in, more_out]
        if at.date() != before.date():
            value = [0, 0]  # the device restarted its totals at local midnight; these people came after it
        elif reboot and all(m < v for m, v in zip(more, value, strict=True)):
            value = [0, 0]
            resets += 1
        value = [v + m for v, m in zip(value, more, strict=True)]
        truth = [t + m for t, m in zip(truth, more, strict=True)]
        payload = body(at, *value)
        readings.add(int(at.timestamp() * 1000))
        deliveries += [(payload, restart)] + ([(payload, False)] if twice else [])
    records = run(profile("daily_cumulative", delta_at=delta_at), deliveries)
    counts = counts_of(records)
    assert all(c.entries >= 0 and c.exits >= 0 for c in counts)
    assert all(c.end_ms > c.start_ms for c in counts)
    assert [sum(c.entries for c in counts), sum(c.exits for c in counts)] == truth
    midnight = int(start.replace(hour=0, minute=0).timestamp() * 1000)
    assert counts[0].start_ms == midnight, "the first reading counts from local midnight"
    if delta_at == "end":
        # After the first (spread over its morning), people are filed in the millisecond before a push,
        # and the periods join up: nothing between the first reading and the last is left uncovered.
        later = counts[1:]
        assert all(c.end_ms in readings and c.end_ms - c.start_ms == 1 for c in later if c.entries or c.exits)
        assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(counts))
    assert sum(1 for r in records if isinstance(r, SensorEvent) and r.kind == "counter_reset") == resets, (
        "a midnight restart is expected and silent; only reboots are resets"
    )
