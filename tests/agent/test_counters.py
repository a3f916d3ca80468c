"""Counter arithmetic (agent/decode/counters.py) on a real buffer: resends never count twice, no delta is negative."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from footfall.agent.buffer import QUARANTINE_KEY, Buffer, Txn
from footfall.agent.decode.counters import CounterPolicy, Step, TakeResult, advance, take
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.protocol.records import Count, Record, SensorEvent, Transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_frames(frames: Sequence[Sequence[Reading]], policy: CounterPolicy) -> tuple[list[Record], list[TakeResult]]:
    """Take each frame in its own buffer transaction, as a source would; return the stored records."""

    async def scenario() -> tuple[list[Record], list[TakeResult]]:
        with tempfile.TemporaryDirectory() as folder:
            async with Buffer(Path(folder) / "b.sqlite", max_size=1 << 30, commit_interval=0) as buffer:
                results = []
                for frame in frames:

                    def commit(txn: Txn, frame: Sequence[Reading] = frame) -> TakeResult:
                        return take(txn, frame, policy)

                    results.append(await buffer.write(commit))
                return await buffer.records(), results

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("previous", "current", "modulus", "step"),
    [
        (10, 15, 0, Step(5, "ok")),
        (10, 10, 65536, Step(0, "ok")),
        (65530, 4, 65536, Step(10, "wrap")),
        (4294967290, 5, 4294967296, Step(11, "wrap")),
        (500, 3, 65536, Step(3, "reset")),
        (500, 3, 0, Step(3, "reset")),
    ],
)
def test_advance(previous: int, current: int, modulus: int, step: Step) -> None:
    assert advance(previous, current, modulus) == step


def test_cumulative_baseline_deltas_wrap_reset_and_resend() -> None:
    def at(minute: int, entries: int, exits: int) -> CumulativeCount:
        return CumulativeCount("door", "main", minute * 60_000, entries, exits)

    frames = [[at(0, 65500, 10)], [at(1, 65530, 12)], [at(2, 4, 15)], [at(2, 4, 15)], [at(3, 2, 1)], [at(1, 9, 9)]]
    records, results = run_frames(frames, CounterPolicy(modulus=65536))
    assert [r.baselines for r in results] == [1, 0, 0, 0, 0, 0]
    assert [r.duplicates for r in results] == [0, 0, 0, 1, 0, 1]
    counts = [r for r in records if isinstance(r, Count)]
    assert [(c.start_ms, c.end_ms, c.entries, c.exits) for c in counts] == [
        (0, 60_000, 30, 2),
        (60_000, 120_000, 10, 3),
        (120_000, 180_000, 2, 1),
    ]
    events = [r for r in records if isinstance(r, SensorEvent)]
    assert [(e.kind, e.detail) for e in events] == [
        ("counter_wrap", "line main: entries 65530 -> 4 (wrapped at 65536)"),
        ("counter_reset", "line main: entries 4 -> 2, exits 15 -> 1"),
    ]


def test_a_void_under_the_sales_id_is_not_a_resend() -> None:
    sale = Transaction("pos-1", "T-1", 1, "sale", 100, "EUR")
    void = Transaction("pos-1", "T-1", 2, "void", 100, "EUR")
    records, results = run_frames([[sale], [sale, void], [void]], CounterPolicy())
    assert [r.duplicates for r in results] == [0, 1, 1]
    assert [r.kind for r in records if isinstance(r, Transaction)] == ["sale", "void"]


@PROPERTY
@given(
    periods=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=25),
    data=st.data(),
)
def test_interval_counts_with_resends_sum_to_the_truth(periods: list[tuple[int, int]], data: st.DataObject) -> None:
    readings = [
        Count("door", "main", i * 60_000, (i + 1) * 60_000, entries, exits)
        for i, (entries, exits) in enumerate(periods)
    ]
    deliveries = [r for r in readings for _ in range(data.draw(st.integers(1, 3), label="times sent"))]
    order = data.draw(st.permutations(deliveries), label="arrival order")
    frames: list[list[Reading]] = []
    while order:
        size = data.draw(st.integers(1, 4), label="frame size")
        frames.append(list(order[:size]))
        order = order[size:]
    records, results = run_frames(frames, CounterPolicy())
    counts = [r for r in records if isinstance(r, Count)]
    assert sum(c.entries for c in counts) == sum(e for e, _ in periods)
    assert sum(c.exits for c in counts) == sum(x for _, x in periods)
    assert sorted(c.start_ms for c in counts) == [r.start_ms for r in readings]
    assert sum(r.duplicates for r in results) == len(deliveries) - len(readings)


@PROPERTY
@given(
    modulus=st.sampled_from([0, 256, 65536]),
    start=st.integers(0, 255),
    steps=st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 100), st.booleans(), st.booleans()), min_size=1, max_size=30
    ),
)
def test_cumulative_counters_with_wraps_resets_and_resends_sum_to_the_truth(
    modulus: int, start: int, steps: list[tuple[int, int, bool, bool]]
) -> None:
    """A simulated device: running totals that wrap at `modulus`, reset to what it counted since, re-send readings."""
    limit = modulus // 2 - 1 if modulus else 10**9
    value = [start % (modulus or 1 << 62), start % (modulus or 1 << 62)]
    frames: list[list[Reading]] = [[CumulativeCount("door", "main", 0, value[0], value[1])]]
    truth = [0, 0]
    resets = 0
    for minute, (more_in, more_out, reset, resend) in enumerate(steps, start=1):
        more = [min(more_in, limit), min(more_out, limit)]
        # A reset is only detectable when the new totals are below the old ones (and not a wrap's drop).
        detectable = reset and all(
            m < v and (not modulus or v - m <= modulus // 2) for m, v in zip(more, value, strict=True)
        )
        for ch in (0, 1):
            value[ch] = more[ch] if detectable else value[ch] + more[ch]
            if modulus:
                value[ch] %= modulus
            truth[ch] += more[ch]
        resets += detectable
        reading = CumulativeCount("door", "main", minute * 60_000, value[0], value[1])
        frames.append([reading, reading] if resend else [reading])
    records, _ = run_frames(frames, CounterPolicy(modulus=modulus))
    counts = [r for r in records if isinstance(r, Count)]
    assert all(c.entries >= 0 and c.exits >= 0 for c in counts)
    assert [sum(c.entries for c in counts), sum(c.exits for c in counts)] == truth
    assert len(counts) == len(steps)
    assert sum(1 for r in records if isinstance(r, SensorEvent) and r.kind == "counter_reset") == resets


def test_a_daily_counters_first_reading_counts_from_midnight_unless_a_buffer_was_lost_since() -> None:
    midnight = 1_772_924_400_000  # 2026-03-08 00:00 in Paris
    first = CumulativeCount("cam", "main", midnight + 9 * 3_600_000, 12, 3, day="2026-03-08", day_start_ms=midnight)
    records, results = run_frames([[first]], CounterPolicy())
    assert [(r.start_ms, r.end_ms, r.entries, r.exits) for r in records if isinstance(r, Count)] == [
        (midnight, first.at_ms, 12, 3)
    ]
    assert results[0].baselines == 0

    async def after_a_loss(loss_ms: int) -> list[Record]:
        with tempfile.TemporaryDirectory() as folder:
            async with Buffer(Path(folder) / "b.sqlite", max_size=1 << 30, commit_interval=0) as buffer:
                await buffer.write(lambda txn: txn.put_state(QUARANTINE_KEY, {"files": [{"at_ms": loss_ms}]}))
                await buffer.write(lambda txn: take(txn, [first], CounterPolicy()))
                return await buffer.records()

    # A buffer replaced this morning: the counter's state may be what was lost, its morning already sent.
    assert asyncio.run(after_a_loss(midnight + 3_600_000)) == []
    # Replaced yesterday: nothing of today can have gone up from it.
    assert len(asyncio.run(after_a_loss(midnight - 3_600_000))) == 1
