"""The ledger (agent/buffer/ledger.py): the bookkeeping rules on their own, then held against the
records of a real buffer after every kind of change the buffer makes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from footfall.agent.buffer import Buffer, Txn
from footfall.agent.buffer.ledger import KEYS, ROW_OVERHEAD, Ledger, row_cost
from footfall.agent.buffer.requeue import requeue_parked
from footfall.agent.clock import Stamp, Trust
from footfall.protocol.records import Count, Occupancy

from tests.agent.buffer.helpers import count


def test_what_is_appended_then_acked_leaves_bytes_and_depth_at_zero_and_moves_the_marks() -> None:
    ledger = Ledger()
    for size in (100, 250, 7):
        ledger.appended(size)
    assert (ledger.next_seq, ledger.depth, ledger.bytes) == (4, 3, 357 + 3 * ROW_OVERHEAD)
    ledger.acked(3, rows=3, body_bytes=357, now_ms=1_000)
    assert (ledger.depth, ledger.bytes, ledger.acked_seq, ledger.last_ack_ms) == (0, 0, 3, 1_000)
    assert ledger.next_seq == 4, "an ack never gives a seq back"


def test_an_older_ack_never_lowers_the_acked_mark() -> None:
    ledger = Ledger(next_seq=11, acked_seq=10)
    ledger.acked(4, rows=0, body_bytes=0, now_ms=2_000)
    assert ledger.acked_seq == 10 and ledger.last_ack_ms == 2_000


def test_parked_and_dropped_records_leave_the_queue_and_count_their_way_out() -> None:
    ledger = Ledger()
    for _ in range(5):
        ledger.appended(10)
    ledger.parked(10)
    ledger.dropped(2, 20)
    ledger.gap_recorded()
    assert (ledger.depth, ledger.bytes) == (2, row_cost(20, 2))
    assert (ledger.rejected, ledger.dropped_records, ledger.gap_events) == (1, 2, 1)


def test_renumbering_moves_next_seq_past_the_collectors_mark_and_never_back() -> None:
    ledger = Ledger(next_seq=50, bytes=500, depth=5)
    ledger.renumbered(99)
    assert (ledger.next_seq, ledger.bytes, ledger.depth) == (100, 0, 0)
    ledger.renumbered(10)
    assert ledger.next_seq == 100


def test_a_fresh_buffer_carries_over_the_larger_counters_and_the_latest_trusted_time() -> None:
    ledger = Ledger(next_seq=1, dropped_records=3, wall_high_ms=5_000)
    old = {"dropped_records": 1, "gap_events": 4, "rejected": 2, "restamped": 6, "suspect": 1, "wall_high_ms": 9_000}
    ledger.carried_over(old, next_seq=700, acked_seq=600, wall_high_ms=7_000)
    assert (ledger.next_seq, ledger.acked_seq) == (700, 600)
    assert (ledger.dropped_records, ledger.gap_events, ledger.rejected) == (3, 4, 2)
    assert (ledger.restamped, ledger.suspect, ledger.wall_high_ms) == (6, 1, 9_000)
    ledger.carried_over({}, next_seq=800, acked_seq=600, wall_high_ms=12_000)
    assert ledger.wall_high_ms == 12_000 and ledger.gap_events == 4, "an unreadable old file lowers nothing"


def test_a_commit_writes_only_the_numbers_that_moved_and_a_copy_is_independent() -> None:
    before = Ledger(next_seq=5, acked_seq=2)
    after = before.copy()
    after.appended(30)
    after.trusted_commit(1_700_000_000_000)
    after.trusted_commit(1_600_000_000_000)
    assert before == Ledger(next_seq=5, acked_seq=2)
    assert after.changed_since(before) == {
        "next_seq": 6, "bytes": row_cost(30), "depth": 1, "wall_high_ms": 1_700_000_000_000,
    }
    assert Ledger.from_meta({**after.as_meta(), "not_ours": 1}) == after
    assert Ledger.from_meta({"next_seq": 9}) == Ledger(next_seq=9), "a key a version-1 file lacks keeps its default"


def meta_and_truth(path: Path) -> tuple[dict[str, int], tuple[int, int, int]]:
    """The `meta` table, and (depth, bytes, highest seq) counted from `records` itself."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        depth, body_bytes, top = conn.execute(
            "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(max(seq), 0) FROM records"
        ).fetchone()
    finally:
        conn.close()
    return meta, (depth, body_bytes + ROW_OVERHEAD * depth, top)


async def test_the_kept_bytes_and_depth_are_what_the_records_hold_after_every_kind_of_change(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    steps: list[str] = []

    async def check(step: str) -> None:
        meta, (depth, stored, top) = meta_and_truth(path)
        steps.append(step)
        assert set(meta) == set(KEYS), "the ledger's fields are the meta table's rows"
        assert (meta["depth"], meta["bytes"]) == (depth, stored), f"after {step}"
        assert meta["next_seq"] > top, f"after {step}: next_seq is above every stored seq"

    untrusted = Stamp(wall_ms=1_000, mono_ms=500, boot_id="boot-a", trusted=False)
    async with Buffer(path, max_size=20_000, commit_interval=0) as buffer:
        await check("open")
        await buffer.append([count(i) for i in range(200)])
        await check("append and the overflow drop it caused")
        assert (await buffer.stats()).dropped_records > 0
        await buffer.ack((await buffer.read_batch(20, 1 << 20))[-1].seq)
        await check("ack")
        (first,) = await buffer.read_batch(1, 1 << 20)
        assert await buffer.reject(first.seq, "malformed")
        await check("reject")
        await buffer.rebase(10_000)
        await check("rebase")
        await buffer.write(lambda txn: txn.hold(Occupancy("door", "main", 1_000, 3), untrusted))
        trusted = Stamp(wall_ms=1_700_000_000_000, mono_ms=1_000, boot_id="boot-a", trusted=True)
        await buffer.restamp(Trust(True, "synced", "ntp", "boot-a", trusted.offset_ms), trusted)
        await check("restamp")

        def requeue(txn: Txn) -> object:
            return requeue_parked(txn, lambda record: record)

        await buffer.write(requeue)
        await check("requeue")
        await buffer.append([Count("door", "main", 5, 6, 1, 0)])
        await check("append after all that")
    assert len(steps) == 8
