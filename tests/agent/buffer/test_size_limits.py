"""Guarantee 6 (agent/buffer/overflow.py): the buffer is bounded, and what it drops is reported exactly.

Also the other bounds: a batch's size, and the dedupe keys' number and age.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer, Txn
from footfall.agent.buffer.ledger import Ledger
from footfall.protocol.records import SensorEvent

from tests.agent.buffer.helpers import count, covered
from tests.agent.conftest import eventually


async def test_overflow_drops_the_oldest_and_records_the_exact_lost_range(tmp_path: Path) -> None:
    limit = 40_000
    async with Buffer(tmp_path / "b.sqlite", max_size=limit, commit_interval=0) as buffer:
        for round_ in range(12):
            await buffer.append([count(round_ * 50 + i) for i in range(50)])
            stats = await buffer.stats()
            assert stats.bytes <= limit
            records = await buffer.records()
            present = {r.seq for r in records}
            missing = set(range(1, stats.next_seq)) - present
            assert missing == covered(records), f"round {round_}: lost seqs must be exactly the gap ranges"
        assert stats.dropped_records > 0 and stats.gap_events >= 2
        gaps = [r for r in records if isinstance(r, SensorEvent) and r.kind == "gap"]
        assert gaps and all(g.sensor == "agent" for g in gaps)
        assert min(g.lost_first for g in gaps) == 1, "an earlier gap's range is carried when that gap is dropped"


async def test_a_batch_overtaken_by_overflow_cannot_be_claimed_and_a_claimed_one_is_never_dropped(
    tmp_path: Path,
) -> None:
    limit = 40_000
    async with Buffer(tmp_path / "b.sqlite", max_size=limit, commit_interval=0) as buffer:
        await buffer.append([count(i) for i in range(100)])
        batch = await buffer.read_batch(50, 1 << 20)
        # While the batch is being sent, overflow waits: what reaches the collector is never also reported lost.
        assert await buffer.claim(batch[0].seq, batch[-1].seq, len(batch))
        await buffer.append([count(i) for i in range(100, 600)])
        assert (await buffer.stats()).dropped_records == 0
        assert {r.seq for r in batch} <= {r.seq for r in await buffer.records()}
        buffer.release()
        # The next commit drops the oldest, the released batch first, and says so exactly.
        await buffer.append([count(600)])
        stats = await buffer.stats()
        assert stats.dropped_records > 0 and stats.bytes <= limit
        records = await buffer.records()
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == covered(records)
        # A batch read before that drop must not be sent: its records are in a gap already.
        assert not await buffer.claim(batch[0].seq, batch[-1].seq, len(batch))
        fresh = await buffer.read_batch(50, 1 << 20)
        assert await buffer.claim(fresh[0].seq, fresh[-1].seq, len(fresh))
        buffer.release()


async def test_overflow_held_back_by_an_upload_drops_as_soon_as_the_upload_ends(tmp_path: Path) -> None:
    # The bound is exceeded only while a batch is out: once it is released the drop follows, even when
    # no other write comes (a quiet store after a burst), so the buffer does not stay over its bound.
    limit = 40_000
    async with Buffer(tmp_path / "b.sqlite", max_size=limit, commit_interval=0) as buffer:
        await buffer.append([count(i) for i in range(100)])
        batch = await buffer.read_batch(50, 1 << 20)
        assert await buffer.claim(batch[0].seq, batch[-1].seq, len(batch))
        await buffer.append([count(i) for i in range(100, 600)])
        assert (await buffer.stats()).bytes > limit, "no drop while the batch is out"
        buffer.release()

        async def within_bound() -> bool:
            return (await buffer.stats()).bytes <= limit

        await eventually(within_bound, what="the overflow drop after the release")
        records = await buffer.records()
        stats = await buffer.stats()
        assert stats.dropped_records > 0 and stats.gap_events >= 1
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == covered(records)


async def test_read_batch_respects_bytes_but_returns_at_least_one(buffer: Buffer) -> None:
    await buffer.append([SensorEvent("door", 1, "error", "x" * 500) for _ in range(4)])
    assert len(await buffer.read_batch(10, 1200)) == 2
    assert len(await buffer.read_batch(10, 10)) == 1


async def test_dedupe_keys_are_bounded_in_time_and_number(buffer: Buffer, monkeypatch: pytest.MonkeyPatch) -> None:
    def remember(txn: Txn) -> list[bool]:
        return [txn.first_seen("period door", str(i), keep_ms=1000 * (i + 1)) for i in range(5)]

    assert await buffer.write(remember) == [True] * 5
    assert await buffer.write(remember) == [False] * 5, "within their window the keys are remembered"
    now_ms = (await buffer.write(lambda txn: txn.now_ms)) + 2500
    await buffer._submit(lambda conn: Txn(conn, Ledger(), now_ms).prune_seen(), write=False)
    assert await buffer.write(remember) == [True, True, False, False, False], "expired keys are forgotten"
    monkeypatch.setattr("footfall.agent.buffer.txn.SEEN_KEYS_MAX", 2)
    await buffer._submit(lambda conn: Txn(conn, Ledger(), 0).prune_seen(), write=False)
    left = await buffer._submit(lambda conn: conn.execute("SELECT key FROM seen ORDER BY key").fetchall(), write=False)
    assert [k for (k,) in left] == ["3", "4"], "over the cap, the keys closest to expiry go first"
