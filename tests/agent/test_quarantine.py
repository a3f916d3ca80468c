"""Power cuts and damaged files, on real `footfall agent run` processes and a real scripted collector.

A "power cut" is SIGKILL in the middle of a burst of device pushes. Then the buffer file is
damaged on purpose (cut short, a page of zeros, its header zeroed) and the agent restarted:
it must move the file aside, start a fresh buffer above every seq it used, tell the
collector the exact range it lost, keep running, and `footfall agent buffer salvage` must put
back what the damaged file still holds without counting anything twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import pytest
from footfall.agent.buffer.pages import scan
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import Count, SensorEvent

from tests.agent.conftest import eventually
from tests.agent.peer import Answer, PeerCollector
from tests.agent.test_pipeline import agent_cli, period, post_all, start_agent, stored, write_config


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
