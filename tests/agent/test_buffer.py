"""The buffer's guarantees (agent/buffer.py docstring), each proven on a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer, BufferError, Txn, read_stats
from footfall.agent.buffer.ledger import Ledger
from footfall.agent.buffer.marks import Marks, MarkValues, read_marks
from footfall.agent.clock import Stamp
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import Count, Record, SensorEvent

from tests.agent.conftest import eventually


def count(i: int, sensor: str = "door") -> Count:
    """A distinct interval count."""
    return Count(sensor, "main", 1_000_000 + i * 60_000, 1_000_000 + (i + 1) * 60_000, i % 7, i % 3)


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


async def test_a_failed_commit_takes_nothing_and_says_so(buffer: Buffer) -> None:
    await buffer.append([count(1)])
    pages = await buffer._submit(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0], write=False)
    await buffer._submit(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}").fetchone(), write=False)
    big = [SensorEvent("door", 1, "error", "x" * 2000) for _ in range(50)]
    with pytest.raises(BufferError, match="full"):
        await buffer.append(big)
    stats = await buffer.stats()
    assert (stats.depth, stats.next_seq) == (1, 2)
    await buffer._submit(lambda conn: conn.execute("PRAGMA max_page_count = 1000000").fetchone(), write=False)
    assert await buffer.append([count(2)]) == [2]


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


def just_booted(uptime_s: float = 5.0) -> Callable[[], float]:
    """A monotonic clock as on a gateway that booted `uptime_s` ago (whatever this machine's uptime)."""
    booted = time.monotonic() - uptime_s
    return lambda: time.monotonic() - booted


async def test_the_first_write_commits_at_once_on_a_machine_that_just_booted(tmp_path: Path) -> None:
    # The commit window counts from the last commit; before the first there is none, even when the
    # monotonic clock reads less than the window (a gateway up for 5 s, a window of an hour).
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=3600, monotonic=just_booted()) as buffer:
        async with asyncio.timeout(30):
            assert await buffer.append([count(1)]) == [1]
        waiting = asyncio.create_task(buffer.append([count(2)]))
        async with asyncio.timeout(30):
            assert await buffer.ack(1) == 1
        assert not waiting.done(), "the second write waits for its window"
        waiting.cancel()


def test_the_first_acked_mark_is_written_at_once_on_a_machine_that_just_booted(tmp_path: Path) -> None:
    # Acked marks are written lazily, at most once a minute: the first one is not a minute late on a
    # gateway whose monotonic clock reads less than a minute.
    path = tmp_path / "buffer.sqlite.marks"
    marks = Marks.open(path, monotonic=just_booted())
    try:
        marks.note(acked=7)
        assert (read_marks(path) or MarkValues()).acked == 7
        marks.note(acked=8)
        assert (read_marks(path) or MarkValues()).acked == 7, "later ones wait for the minute"
    finally:
        marks.close()
    assert (read_marks(path) or MarkValues()).acked == 8


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


async def test_read_batch_respects_bytes_but_returns_at_least_one(buffer: Buffer) -> None:
    await buffer.append([SensorEvent("door", 1, "error", "x" * 500) for _ in range(4)])
    assert len(await buffer.read_batch(10, 1200)) == 2
    assert len(await buffer.read_batch(10, 10)) == 1


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


# 6. Bounded, with the loss recorded exactly.


def _covered(records: list[Record]) -> set[int]:
    out: set[int] = set()
    for r in records:
        if isinstance(r, SensorEvent) and r.kind == "gap":
            out.update(range(r.lost_first, r.lost_last + 1))
    return out


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
            assert missing == _covered(records), f"round {round_}: lost seqs must be exactly the gap ranges"
        assert stats.dropped_records > 0 and stats.gap_events >= 2
        gaps = [r for r in records if isinstance(r, SensorEvent) and r.kind == "gap"]
        assert gaps and all(g.sensor == "agent" for g in gaps)
        assert min(g.lost_first for g in gaps) == 1, "an earlier gap's range is carried when that gap is dropped"


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


async def test_a_closed_buffer_refuses_writes(tmp_path: Path) -> None:
    buffer = Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0)
    await buffer.open()
    await buffer.close()
    with pytest.raises(BufferError, match="not open"):
        await buffer.append([count(1)])


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
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == _covered(records)
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
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == _covered(records)


def untrusted_stamps() -> Stamp:
    """The agent's clock as on a gateway without NTP whose time the collector has not confirmed."""
    now = time.time()
    return Stamp(wall_ms=int(now * 1000), mono_ms=int(time.monotonic() * 1000), boot_id="boot-a", trusted=False)


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
        assert set(range(1, stats.next_seq)) - {r.seq for r in records} == _covered(records)
        next_seq = stats.next_seq

    # A damaged file moved aside: the loss it reports does not wait for the clock either.
    with path.open("r+b") as damaged:
        damaged.write(bytes(100))
    async with Buffer(path, max_size=limit, commit_interval=0, stamps=untrusted_stamps) as buffer:
        assert await buffer.held() == []
        (gap,) = [r for r in await buffer.records() if isinstance(r, SensorEvent) and r.kind == "gap"]
        assert (gap.lost_first, gap.clock) == (1, "suspect") and gap.lost_last >= next_seq - 1


def test_status_reads_nothing_from_a_buffer_file_the_agent_is_still_creating(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    sqlite3.connect(path).close()  # the file exists, its tables not yet
    assert read_stats(path) is None


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
