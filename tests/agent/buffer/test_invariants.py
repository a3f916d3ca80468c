"""Guarantees 1-5 (agent/buffer/__init__.py): taken means durable, seqs, state rides with records,
group commit, delete only after ack. Each proven on a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

from footfall.agent.buffer import Buffer, Txn, read_stats
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import Count

from tests.agent.buffer.helpers import count


def committed_seqs(path: Path) -> list[int]:
    """What another process would find in the file now."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [seq for (seq,) in conn.execute("SELECT seq FROM records ORDER BY seq")]
    finally:
        conn.close()


# 1. Taken means durable.


async def test_wal_with_synchronous_full(buffer: Buffer) -> None:
    assert await buffer.pragmas() == {"journal_mode": "wal", "synchronous": "FULL"}


async def test_a_write_returns_only_after_its_commit_and_readers_see_only_commits(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=1.0) as buffer:
        assert await buffer.append([count(1)]) == [1]  # idle buffer: commits at once
        assert committed_seqs(buffer.path) == [1]
        pending = asyncio.create_task(buffer.append([count(2)]))  # waits for the window
        await asyncio.sleep(0)
        batch = await buffer.read_batch(100, 1 << 20)
        assert [r.seq for r in batch] == [1], "an uncommitted record must never be offered for upload"
        assert not pending.done()
        assert await pending == [2]
        assert committed_seqs(buffer.path) == [1, 2]


# 2. Sequence numbers.


async def test_seq_strictly_increases_survives_restarts_and_is_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        assert await buffer.append([count(1), count(2), count(3)]) == [1, 2, 3]
        assert await buffer.ack(3) == 3
        assert (await buffer.stats()).depth == 0
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        assert await buffer.append([count(4)]) == [4]
        stats = await buffer.stats()
        assert (stats.next_seq, stats.acked_seq) == (5, 3)
        assert await buffer.records() == [replace(count(4), seq=4)]


async def test_records_are_stored_packed_with_their_seq(buffer: Buffer) -> None:
    await buffer.append([count(1)])
    (stored,) = await buffer.read_batch(10, 1 << 20)
    record = unpack_record(stored.body)
    assert record.seq == 1 and isinstance(record, Count) and record.entries == 1


async def test_rebase_moves_records_past_the_collectors_mark(buffer: Buffer) -> None:
    await buffer.append([count(1), count(2)])
    assert await buffer.rebase(100) == 2
    assert [r.seq for r in await buffer.records()] == [101, 102]
    assert [r.entries for r in await buffer.records()] == [1, 2]
    assert await buffer.append([count(3)]) == [103]


# 3. State rides with records.


async def test_state_and_records_of_a_failing_write_roll_back_together_and_alone(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0.3) as buffer:
        await buffer.append([count(0)])

        def bad(txn: Txn) -> None:
            txn.append(count(1))
            txn.put_state("cumulative door", {"entries": 5})
            txn.first_seen("period door", "1", 60_000)
            raise ValueError("the device sent nonsense")

        def good(txn: Txn) -> int:
            txn.put_state("other", {"entries": 1})
            return txn.append(count(2))

        outcomes = await asyncio.gather(buffer.write(bad), buffer.write(good), return_exceptions=True)
        assert isinstance(outcomes[0], ValueError)
        assert outcomes[1] == 2, "the failing write must not take its group down"
        assert [r.seq for r in await buffer.records()] == [1, 2]

        def look(txn: Txn) -> tuple[object, object, bool]:
            return txn.get_state("cumulative door"), txn.get_state("other"), txn.first_seen("period door", "1", 1)

        assert await buffer.write(look) == (None, {"entries": 1}, True)


async def test_a_writer_that_gives_up_does_not_abort_its_commit_or_the_others(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0.3) as buffer:
        quitter = asyncio.create_task(buffer.append([count(1)]))
        stayer = asyncio.create_task(buffer.append([count(2)]))
        await asyncio.sleep(0)  # one loop turn: both tasks run up to their await, queued in one commit window
        quitter.cancel()
        assert await stayer == [2]
        with contextlib.suppress(asyncio.CancelledError):
            await quitter
        # The device hung up, but what it sent was taken (it will resend; dedupe drops the copy).
        assert [r.seq for r in await buffer.records()] == [1, 2]


# 4. Group commit.


async def test_concurrent_writes_share_one_commit_per_window(tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0.5) as buffer:
        before = buffer.commits
        seqs = await asyncio.gather(*(buffer.append([count(i)]) for i in range(50)))
        assert sorted(s for (s,) in seqs) == list(range(1, 51))
        assert buffer.commits - before <= 2, f"50 writes took {buffer.commits - before} commits"


async def test_under_sustained_load_there_is_at_most_one_commit_per_window(tmp_path: Path) -> None:
    interval = 0.03
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 30, commit_interval=interval) as buffer:
        loop = asyncio.get_running_loop()
        before = buffer.commits
        start = loop.time()
        written = 0

        async def writer(n: int) -> None:
            nonlocal written
            for i in range(20):
                await buffer.append([count(n * 1000 + i)])
                written += 1

        await asyncio.gather(*(writer(n) for n in range(25)), buffer.ack(0), buffer.ack(0))
        elapsed = loop.time() - start
        commits = buffer.commits - before
    assert written == 500
    # One commit per window, plus one for each of the two acks (they never wait for a window).
    assert commits <= elapsed / interval + 3, f"{commits} commits in {elapsed:.2f} s at one per {interval} s"
    assert commits < written / 10, "writes share commits"


async def test_an_ack_does_not_wait_for_the_readings_window(tmp_path: Path) -> None:
    # An hour's window: the first append commits at once, the second waits for the window; an ack
    # must not, or a backlog would drain one batch per window.
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=3600) as buffer:
        await buffer.append([count(1), count(2)])
        waiting = asyncio.create_task(buffer.append([count(3)]))
        async with asyncio.timeout(30):
            assert await buffer.ack(1) == 1
        assert not waiting.done(), "the reading still waits for its window"
        stats = await buffer.stats()
        assert (stats.depth, stats.acked_seq) == (1, 1)
        waiting.cancel()


# 5. Delete only after ack; rejected records are kept.


async def test_reading_a_batch_deletes_nothing_and_ack_deletes_what_it_covers(buffer: Buffer) -> None:
    await buffer.append([count(i) for i in range(1, 6)])
    assert [r.seq for r in await buffer.read_batch(3, 1 << 20)] == [1, 2, 3]
    assert [r.seq for r in await buffer.read_batch(3, 1 << 20)] == [1, 2, 3]
    assert await buffer.ack(2) == 2
    stats = await buffer.stats()
    assert (stats.depth, stats.acked_seq) == (3, 2)
    assert stats.last_ack_ms > 0
    assert [r.seq for r in await buffer.read_batch(10, 1 << 20)] == [3, 4, 5]


async def test_a_rejected_record_moves_to_the_rejected_table(buffer: Buffer) -> None:
    await buffer.append([count(1), count(2), count(3)])
    before = await buffer.stats()
    assert await buffer.reject(2, "collector: record seq 2 is malformed")
    assert [r.seq for r in await buffer.records()] == [1, 3]
    ((seq, reason, record),) = await buffer.rejected()
    assert (seq, reason, record.seq) == (2, "collector: record seq 2 is malformed", 2)
    after = await buffer.stats()
    assert (after.rejected, after.depth) == (1, 2)
    assert after.bytes < before.bytes


async def test_stats_for_status(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0, clock=lambda: now[0]) as buffer:
        await buffer.append([count(1)])
        now[0] += 60
        await buffer.append([count(2)])
        stats = await buffer.stats()
        assert (stats.depth, stats.oldest_taken_ms, stats.last_ack_ms) == (2, 1_700_000_000_000, 0)
        await buffer.ack(1)
        stats = await buffer.stats()
        assert (stats.oldest_taken_ms, stats.last_ack_ms) == (1_700_000_060_000, 1_700_000_060_000)
        assert buffer.pending.depth == 1
        from_disk = read_stats(buffer.path, 1 << 20)
        assert from_disk is not None and from_disk.depth == 1 and from_disk.acked_seq == 1
