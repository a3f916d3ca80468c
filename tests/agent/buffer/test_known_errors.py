"""Guarantee 7 and the known errors: a full disk, damaged files, power cuts, a second process.

Reading a damaged buffer page by page (agent/buffer/pages.py), the seq marks beside it
(agent/buffer/marks.py), moving a damaged file aside and seeding a fresh one
(agent/buffer/recovery.py), and `footfall agent buffer salvage` (agent/buffer/salvage.py).

Every file here is a real SQLite buffer written by the agent's own Buffer, most of them by a
process killed with SIGKILL in the middle of its work, then damaged on purpose. The last test
does it to a real `footfall agent run` process, with a real scripted collector: SIGKILL in the
middle of a burst of device pushes, the file damaged (cut short, a page of zeros), the agent
restarted: it must move the file aside, start a fresh buffer above every seq it used, tell the
collector the exact range it lost, keep running, and salvage must put back what the damaged
file still holds without counting anything twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer, BufferError, Txn
from footfall.agent.buffer.marks import SLOT, Marks, MarksLocked, read_marks
from footfall.agent.buffer.pages import scan
from footfall.agent.buffer.salvage import SalvageError, salvage
from footfall.agent.clock import Stamp
from footfall.agent.decode.counters import CounterPolicy, cumulative_key, take
from footfall.agent.decode.readings import CumulativeCount
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import Count, Occupancy, SensorEvent, Transaction

from tests.agent.buffer.helpers import count
from tests.agent.conftest import eventually
from tests.agent.peer import Answer, PeerCollector
from tests.agent.test_pipeline import agent_cli, period, post_all, start_agent, stored, write_config

REPO = Path(__file__).resolve().parents[3]

# Writes `total` records in bursts of 50 through the real Buffer, acks the first `acked`, then dies by SIGKILL.
_KILLED_WRITER = """
import asyncio, os, signal, sys
from pathlib import Path
from footfall.agent.buffer import Buffer
from footfall.protocol.records import Count, Transaction

async def main(path, total, acked):
    buffer = Buffer(Path(path), max_size=1 << 30, commit_interval=0.005)
    await buffer.open()
    for first in range(0, total, 50):
        batch = [Count("door", "main", 1_000_000 + i * 60_000, 1_000_000 + (i + 1) * 60_000, i % 7, i % 3)
                 for i in range(first, min(total, first + 50))]
        await asyncio.gather(*(buffer.append([r]) for r in batch))
    await buffer.append([Transaction("pos", "big", 5_000_000, "sale", 1250, "EUR", raw="receipt line\\n" * 1500)])
    if acked:
        await buffer.ack(acked)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def killed_writer(path: Path, total: int, acked: int = 0) -> None:
    """A real process writes the buffer, then is killed with SIGKILL (no close, no checkpoint)."""
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path), str(total), str(acked)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.fixture(scope="module")
def killed_3000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One buffer of 3001 records left by a killed writer, shared by the tests that only read or copy it."""
    path = tmp_path_factory.mktemp("killed") / "buffer.sqlite"
    killed_writer(path, 3000)
    return path


def copy_buffer(source: Path, folder: Path) -> Path:
    """A copy of a buffer with its -wal and marks, as the killed writer left them."""
    for companion in source.parent.iterdir():
        if companion.name.startswith(source.name):
            shutil.copy(companion, folder / companion.name)
    return folder / source.name


def sqlite_view(path: Path) -> dict[int, bytes]:
    """What SQLite itself reads from an intact file (on a copy, so the original stays as it is)."""
    copy = path.with_name("view-" + path.name)
    for suffix in ("", "-wal"):
        if path.with_name(path.name + suffix).exists():
            shutil.copy(path.with_name(path.name + suffix), copy.with_name(copy.name + suffix))
    conn = sqlite3.connect(copy)
    try:
        return dict(conn.execute("SELECT seq, body FROM records"))
    finally:
        conn.close()


def page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def test_a_killed_writers_commits_are_read_from_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    killed_writer(path, 600, acked=100)
    assert path.with_name("buffer.sqlite-wal").stat().st_size > 0, "the kill left the commits in the WAL"
    truth = sqlite_view(path)
    found = scan(path)
    assert found.records.keys() == truth.keys() == set(range(101, 602))
    assert all(found.records[seq][1] == body for seq, body in truth.items())
    assert found.meta["next_seq"] == 602 and found.meta["acked_seq"] == 100
    big = unpack_record(found.records[601][1])
    assert isinstance(big, Transaction) and len(big.raw) > 16_000, "a record on overflow pages is read whole"
    assert found.bad_pages == 0 and found.bad_cells == 0


def test_acknowledged_records_are_never_resurrected_from_free_pages(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    killed_writer(path, 2000, acked=1900)
    found = scan(path)
    assert found.free_pages > 0, "the ack freed whole pages of records"
    assert min(found.records) == 1901, "rows deleted by the ack (on free pages or not) stay deleted"
    assert set(found.records) == set(sqlite_view(path))


@pytest.mark.parametrize("damage", ["zero_page", "truncate", "zero_header"])
def test_a_damaged_file_gives_up_only_what_was_on_the_damaged_pages(
    tmp_path: Path, damage: str, killed_3000: Path
) -> None:
    path = copy_buffer(killed_3000, tmp_path)
    truth = sqlite_view(path)
    with sqlite3.connect(path) as conn:  # fold the WAL into the file, so the damage hits the records
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = page_size(path)
    data = bytearray(path.read_bytes())
    pages = len(data) // size
    if damage == "zero_page":
        data[(pages // 2) * size : (pages // 2 + 1) * size] = bytes(size)
    elif damage == "truncate":
        del data[(pages * 2 // 3) * size :]
    else:
        data[: size] = bytes(size)
    path.write_bytes(bytes(data))
    conn = sqlite3.connect(path)
    try:
        problems = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        problems = [(str(exc),)]
    finally:
        conn.close()
    assert problems != [("ok",)], "SQLite itself sees the damage"

    found = scan(path)
    assert found.records, "most of the file is still readable"
    assert set(found.records) <= set(truth)
    assert all(found.records[seq][1] == truth[seq] for seq in found.records)
    lost = sorted(set(truth) - set(found.records))
    if damage == "zero_header":
        assert found.page_size == size and not found.header_ok
        assert len(lost) <= size // 40, "only the first page's rows (if any) are gone"
    elif damage == "zero_page":
        assert 0 < len(lost) <= size // 40, "one leaf page of ~40-byte rows is gone, no more"
        assert lost == list(range(lost[0], lost[-1] + 1)), "the lost rows are one page's consecutive seqs"
    else:
        assert lost and 1 in found.records, "the pages before the cut are read"


def test_marks_survive_a_torn_write_and_lock_out_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite.marks"
    marks = Marks.open(path)
    assert not marks.existed
    marks.ensure_reserved(1)
    first = marks.values.reserved
    marks.ensure_reserved(first)
    second = marks.values.reserved
    assert second > first
    with pytest.raises(MarksLocked):
        Marks.open(path)
    marks.close()
    assert read_marks(path).reserved == second
    # Tear the newer slot: the older one is still read.
    newer = read_marks(path).gen % 2
    with path.open("r+b") as f:
        f.seek(newer * SLOT + 20)
        f.write(b"\x00garbage")
    assert read_marks(path).reserved == first


async def test_every_committed_seq_stays_below_the_marks_after_a_kill(tmp_path: Path, killed_3000: Path) -> None:
    path = copy_buffer(killed_3000, tmp_path)
    reserved = read_marks(path.with_name("buffer.sqlite.marks")).reserved
    assert max(sqlite_view(path)) < reserved
    os.remove(path)  # even with the database gone, a new buffer never reuses a seq
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        (seq,) = await buffer.append([Count("door", "main", 1, 2, 1, 0)])
        records = await buffer.records()
    assert seq > 3001
    assert records[0].kind == "gap" and (records[0].lost_first, records[0].lost_last) == (1, seq - 2)


async def test_quarantine_carries_state_keys_and_held_readings_and_salvage_counts_nothing_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "buffer.sqlite"
    policy = CounterPolicy()
    minute = 60_000
    t0 = 1_800_000_000_000
    period_p = Count("door", "main", t0, t0 + minute, 3, 1)
    period_q = Count("door", "main", t0 + minute, t0 + 2 * minute, 2, 2)
    untrusted = Stamp(wall_ms=1_000, mono_ms=500, boot_id="boot-a", trusted=False)

    def first_run(txn: Txn) -> None:
        take(txn, [CumulativeCount("gate", "main", t0, 100, 50)], policy)
        take(txn, [CumulativeCount("gate", "main", t0 + minute, 110, 52)], policy)
        take(txn, [period_p, period_q], policy)
        txn.hold(Occupancy("door", "main", 1_000, 4), untrusted)

    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        await buffer.write(first_run)
        assert [r.seq for r in await buffer.records()] == [1, 2, 3]
    conn = sqlite3.connect(path)
    # Q's dedupe key sat on a page that the damage takes; its header goes too.
    conn.execute("DELETE FROM seen WHERE key = ?", (str(period_q.start_ms),))
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[:100] = bytes(100)
    path.write_bytes(bytes(data))

    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        moved = buffer.quarantined
        assert moved is not None and (moved.lost_first, moved.lost_last) == (1, 3)
        assert moved.resumed == {cumulative_key("gate", "main"): t0 + minute} and moved.carried_held == 1
        (gap,) = await buffer.records()
        assert isinstance(gap, SensorEvent) and (gap.kind, gap.lost_first, gap.lost_last) == ("gap", 1, 3)
        after = await buffer.write(
            lambda txn: take(
                txn, [CumulativeCount("gate", "main", t0 + 2 * minute, 115, 52), period_p, period_q], policy
            )
        )
        assert (after.records, after.duplicates, after.baselines) == (2, 1, 0), "resumed, P dropped, Q taken anew"
        assert len(await buffer.held()) == 1
    with pytest.raises(SalvageError, match="stop the agent"):
        async with Buffer(path, max_size=1 << 20, commit_interval=0):
            await salvage(path, path.with_name(moved.file), max_size=1 << 20)

    report = await salvage(path, path.with_name(moved.file), max_size=1 << 20)
    assert (report.found, report.skipped_acked, report.skipped_resent, report.requeued) == (3, 0, 1, 2)
    async with Buffer(path, max_size=1 << 20, commit_interval=0) as buffer:
        records = await buffer.records()
    counts = [r for r in records if isinstance(r, Count)]
    assert sorted((c.start_ms, c.end_ms) for c in counts) == [
        (t0, t0 + minute),  # the salvaged cumulative period
        (t0, t0 + minute),  # P, salvaged: its resend after the switch was dropped
        (t0 + minute, t0 + 2 * minute),  # Q, taken after the switch (its salvaged copy skipped)
        (t0 + minute, t0 + 2 * minute),  # the cumulative period the fresh buffer resumed with
    ]
    assert len({(c.sensor, c.start_ms) for c in counts}) == 4, "no reading of one sensor counted twice"
    with pytest.raises(SalvageError, match="already salvaged"):
        await salvage(path, path.with_name(moved.file), max_size=1 << 20)


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


def minute_period(n: int) -> dict[str, object]:
    """A distinct one-minute period for each n (several hours of them)."""
    body = period(0)
    hour, minute = divmod(n, 60)
    body["start"] = f"2026-03-08T{hour:02d}:{minute:02d}:00Z"
    body["end"] = f"2026-03-08T{hour + (minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00Z"
    body["in"] = n % 5 + 1
    return body


def damage(path: Path, how: str) -> None:
    """Fold the killed agent's WAL in (as its own checkpoints would have), then damage the file."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # A leaf page of the records table in the middle of it (SQLite's dbstat table says which).
    leaves = [n for (n,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'records' AND pagetype = 'leaf'")]
    conn.close()
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    if how == "truncate":
        del data[(len(data) // size // 2) * size + size // 2 :]
    else:
        victim = sorted(leaves)[len(leaves) // 2]
        data[(victim - 1) * size : victim * size] = bytes(size)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "zero_page"])
async def test_a_damaged_buffer_is_moved_aside_the_loss_is_exact_and_salvage_puts_back_the_rest(
    tmp_path: Path, peer: PeerCollector, how: str
) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    log = tmp_path / "agent.log"
    enrolled = await asyncio.to_thread(
        agent_cli, "enroll", "--collector", peer.url, "--token", "ffe_test", "--config", str(config)
    )
    assert enrolled.returncode == 0, enrolled.stderr
    process, port = await start_agent(config, log)
    try:
        assert await post_all(port, [("/push/entrance", minute_period(n)) for n in range(20)]) == [200] * 20
        await eventually(lambda: not stored(state), what="the first 20 to be acked")
        acked = peer.high_water["agt_test1"]
        # The uplink goes bad: what follows stays in the buffer.
        peer.script.extend(Answer(503, {"error": "unavailable"}, {"Retry-After": "0"}) for _ in range(100_000))
        for first in range(20, 260, 60):
            bodies = [("/push/entrance", minute_period(n)) for n in range(first, first + 60)]
            assert await post_all(port, bodies) == [200] * 60
        burst = asyncio.create_task(post_all(port, [("/push/entrance", minute_period(n)) for n in range(260, 320)]))
        await eventually(lambda: len(stored(state)) > 250, what="part of the last burst to be committed")
    finally:
        process.send_signal(signal.SIGKILL)  # the power cut, mid-burst
        await process.wait()
    answered = await asyncio.gather(burst, return_exceptions=True)
    assert process.returncode == -signal.SIGKILL
    before = {seq: unpack_record(body) for seq, body in stored(state)}
    taken = {r.start_ms for r in before.values() if isinstance(r, Count)}
    assert len(taken) >= 241, "every reading a device got a 200 for was in the buffer at the cut"
    assert isinstance(answered[0], BaseException) or all(s == 200 for s in answered[0])
    last_seq = max(before)
    await asyncio.to_thread(damage, state / "buffer.sqlite", how)

    process, port = await start_agent(config, log)
    try:
        moved = sorted(p.name for p in state.iterdir() if p.name.startswith("buffer.sqlite.corrupt-"))
        assert len(moved) == 1, sorted(p.name for p in state.iterdir())
        status = json.loads((state / "status.json").read_text())
        (entry,) = status["buffer"]["quarantined"]
        assert entry["file"] == moved[0] and (entry["lost_first"], entry["acked"]) == (acked + 1, acked)
        assert entry["lost_last"] == last_seq, "the damaged file's own marks give the exact range"
        assert status["buffer"]["next_seq"] > entry["lost_last"]
        report = await asyncio.to_thread(agent_cli, "status", "--config", str(config))
        assert f"footfall agent buffer salvage {moved[0]}" in report.stdout
        assert "buffer_quarantined" in log.read_text()

        # The uplink comes back: the collector hears of the loss, and new readings flow above it.
        peer.script.clear()
        assert await post_all(port, [("/push/entrance", minute_period(n)) for n in range(500, 505)]) == [200] * 5
        # The gap event was queued when the buffer opened (below next_seq); the readings take the next 5.
        await eventually(lambda: peer.high_water.get("agt_test1", 0) >= status["buffer"]["next_seq"] + 4,
                         what="the gap event and the new readings to be acked")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0, log.read_text()[-3000:]
    gaps = [r for r in peer.accepted if isinstance(r, SensorEvent) and r.kind == "gap"]
    assert [(g.lost_first, g.lost_last) for g in gaps] == [(acked + 1, entry["lost_last"])]
    assert all(r.seq > entry["lost_last"] for r in peer.accepted if r.seq > acked), "no seq was reused"

    # Salvage what the damaged file still holds, with the agent stopped.
    readable = {seq for seq in scan(state / moved[0]).records if seq > acked}
    salvaged = await asyncio.to_thread(agent_cli, "buffer", "salvage", moved[0], "--config", str(config))
    assert salvaged.returncode == 0, salvaged.stderr
    assert f"re-queued {len(readable)} records" in salvaged.stdout

    process, port = await start_agent(config, log)
    try:
        await eventually(lambda: len(stored(state)) == 0, within=30, what="the salvaged records to be uploaded")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
    counts = [r for r in peer.accepted if isinstance(r, Count)]
    starts = [c.start_ms for c in counts]
    assert len(starts) == len(set(starts)), "no period was counted twice"
    recovered = {c.start_ms for c in counts}
    lost = taken - recovered
    assert len(lost) == len(taken) - len(readable), "everything readable came back"
    if how == "zero_page":
        assert 0 < len(lost) <= 100, "only one page's readings are gone"
