"""Opening a buffer: a new file, an upgraded version-1 file, one from a newer agent, a second
process, a gateway that just booted, a file the agent is still creating, and a closed buffer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer, BufferError, read_stats
from footfall.agent.buffer.ledger import ROW_OVERHEAD
from footfall.agent.buffer.marks import Marks, MarkValues, read_marks
from footfall.agent.clock import Stamp
from footfall.protocol.envelope import pack_record

from tests.agent.buffer.helpers import count, just_booted


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


def test_status_reads_nothing_from_a_buffer_file_the_agent_is_still_creating(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    sqlite3.connect(path).close()  # the file exists, its tables not yet
    assert read_stats(path) is None


async def test_a_closed_buffer_refuses_writes(tmp_path: Path) -> None:
    buffer = Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0)
    await buffer.open()
    await buffer.close()
    with pytest.raises(BufferError, match="not open"):
        await buffer.append([count(1)])


# What a version-1 buffer (before held readings) was: no `pending`, eight meta rows.
_VERSION_1 = """
CREATE TABLE records (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE rejected (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, rejected_ms INTEGER NOT NULL,
                       reason TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seen (scope TEXT NOT NULL, key TEXT NOT NULL, expires_ms INTEGER NOT NULL,
                   PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX seen_expiry ON seen (expires_ms);
PRAGMA user_version = 1;
"""


def version_1_file(path: Path) -> bytes:
    """A version-1 buffer holding one record, seq 7, six before it acked; returns the record's body."""
    body = pack_record(count(1), seq=7)
    conn = sqlite3.connect(path)
    conn.executescript(_VERSION_1)
    meta = {"next_seq": 8, "acked_seq": 6, "bytes": len(body) + ROW_OVERHEAD, "depth": 1, "last_ack_ms": 5,
            "dropped_records": 0, "gap_events": 0, "rejected": 0}
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
    conn.execute("INSERT INTO records (seq, taken_ms, kind, body) VALUES (7, 1, 'count', ?)", (body,))
    conn.commit()
    conn.close()
    return body


def moved_aside(folder: Path) -> list[str]:
    """The buffer files moved aside as damaged in `folder`."""
    return sorted(p.name for p in folder.iterdir() if ".corrupt-" in p.name)


def user_version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_a_version_1_file_is_upgraded_in_place_keeping_its_records_and_seqs(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    body = version_1_file(path)
    before = read_stats(path, 1 << 20)  # `status` reads a file the agent has not upgraded yet
    assert before is not None and (before.depth, before.next_seq, before.held, before.wall_high_ms) == (1, 8, 0, 0)
    untrusted = Stamp(wall_ms=1_000, mono_ms=500, boot_id="boot-a", trusted=False)
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        assert user_version(path) == 2
        assert [stored.body for stored in await buffer.read_batch(10, 1 << 20)] == [body]
        assert await buffer.append([count(2)]) == [8], "the numbering goes on where it was"
        await buffer.write(lambda txn: txn.hold(count(3), untrusted))
        assert len(await buffer.held()) == 1, "the table for held readings was added"
        stats = await buffer.stats()
        assert (stats.depth, stats.acked_seq, stats.last_ack_ms, stats.held) == (2, 6, 5, 1)
        assert stats.wall_high_ms > 0, "the meta rows version 1 lacked were added and kept"


async def test_a_file_from_a_newer_agent_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, body BLOB)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with pytest.raises(BufferError, match=r"schema version 3, newer than this agent's \(2\); upgrade footfall"):
        await Buffer(path, max_size=1 << 20, commit_interval=0).open()
    assert user_version(path) == 3
    assert moved_aside(tmp_path) == [], "not damaged: not moved aside"


async def test_a_second_process_on_the_same_buffer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as first:
        with pytest.raises(BufferError, match=r"another footfall process is using .* stop it first"):
            await Buffer(path, max_size=1 << 20, commit_interval=0).open()
        assert await first.append([count(1)]) == [1], "the first one carries on"


async def test_a_state_dir_that_cannot_be_made_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    with pytest.raises(BufferError, match=r"cannot make the folder of the buffer .*check \[agent\] state_dir"):
        await Buffer(tmp_path / "state" / "buffer.sqlite", max_size=1 << 20, commit_interval=0).open()
