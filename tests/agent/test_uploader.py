"""The uploader against a scripted collector over real HTTP: nothing deleted before a 2xx, everything acked once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import UploadSection
from footfall.agent.identity import Identity, enroll, load_identity, load_key, save_identity, write_key
from footfall.agent.uploader import Uploader
from footfall.protocol import signing
from footfall.protocol.records import Count, Record, SensorEvent

from tests.agent.conftest import eventually
from tests.agent.peer import Answer, PeerCollector

FAST = UploadSection(max_records=8, max_bytes=1 << 20, max_age=0.02, backoff_initial=0.01, backoff_max=0.05)


T0_MS = 1_772_960_400_000  # 2026-03-08T09:00Z: the collector refuses record times before 2000


def count(i: int) -> Count:
    return Count("door", "main", T0_MS + i * 60_000, T0_MS + (i + 1) * 60_000, i % 5, i % 3)


def file_seqs(path: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {seq for (seq,) in conn.execute("SELECT seq FROM records")}
    finally:
        conn.close()


@dataclass
class Rig:
    buffer: Buffer
    peer: PeerCollector
    state_dir: Path
    identity: Identity
    violations: list[str]

    def uploader(self, settings: UploadSection = FAST, timeout: float = 5) -> Uploader:
        return Uploader(
            self.buffer,
            settings,
            state_dir=self.state_dir,
            identity=load_identity(self.state_dir),
            key=load_key(self.state_dir),
            timeout=timeout,
        )


@pytest.fixture
async def rig(tmp_path: Path, peer: PeerCollector, buffer: Buffer) -> AsyncIterator[Rig]:
    state_dir = tmp_path / "state"
    key = signing.generate_key()
    write_key(state_dir, key)
    identity = Identity("agt_rig", peer.url, "acme", "store-12", "Europe/Paris", "2026-03-08T00:00:00Z")
    save_identity(state_dir, identity)
    peer.keys["agt_rig"] = signing.public_bytes(key)
    violations: list[str] = []

    def still_buffered(seqs: list[int]) -> None:
        # Runs inside every ingest request, before the peer answers: all of them must still be on disk.
        missing = set(seqs) - file_seqs(buffer.path)
        if missing:
            violations.append(f"seqs {sorted(missing)} deleted before their 2xx")

    peer.on_ingest = still_buffered
    yield Rig(buffer, peer, state_dir, identity, violations)


@contextlib.asynccontextmanager
async def running(uploader: Uploader) -> AsyncIterator[Uploader]:
    task = asyncio.create_task(uploader.run())
    try:
        yield uploader
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drained(buffer: Buffer) -> bool:
    return (await buffer.stats()).depth == 0


def accepted_seqs(peer: PeerCollector) -> list[int]:
    return sorted(r.seq for r in peer.accepted)


async def test_batches_by_count_and_acks_everything_once(rig: Rig) -> None:
    written = [count(i) for i in range(30)]
    await rig.buffer.append(written)
    async with running(rig.uploader()) as uploader:
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain")
    assert accepted_seqs(rig.peer) == list(range(1, 31))
    assert [s.seqs for s in rig.peer.seen] == [
        list(range(1, 9)),
        list(range(9, 17)),
        list(range(17, 25)),
        list(range(25, 31)),
    ]
    assert _content(rig.peer.accepted) == _content(written)
    assert rig.violations == []
    stats = await rig.buffer.stats()
    assert (stats.acked_seq, uploader.status.uploaded_records, uploader.status.batches) == (30, 30, 4)


async def test_every_fault_answer_then_everything_acked_exactly_once(rig: Rig) -> None:
    rig.peer.script = [
        Answer(413, {"error": "batch_too_large", "message": "scripted"}),
        Answer(503, {"error": "unavailable"}, {"Retry-After": "0"}),
        Answer(429, {"error": "rate_limited"}, {"Retry-After": "1"}),
        Answer(500, {"error": "boom"}),
    ]
    rig.peer.max_records = 5
    rig.peer.poison = {7}
    await rig.buffer.append([count(i) for i in range(20)])
    async with running(rig.uploader()) as uploader:
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain")
    assert accepted_seqs(rig.peer) == [s for s in range(1, 21) if s != 7], "each accepted once, the bad one never"
    ((seq, reason, _),) = await rig.buffer.rejected()
    assert (seq, reason) == (7, "record seq 7 is poisoned")
    assert rig.violations == []
    assert uploader.status.last_retry_after_s == 1.0, "429's Retry-After was honoured"
    assert uploader.status.retries >= 3 and uploader.status.splits >= 3 and uploader.status.rejected == 1
    statuses = [s.status for s in rig.peer.seen]
    assert statuses[:4] == [413, 503, 429, 500]
    assert all(len(s.seqs) <= 5 for s in rig.peer.seen if s.status == 200), "413 halved the batches"
    assert (await rig.buffer.stats()).acked_seq == 20


async def test_answers_that_are_not_the_collectors_are_retried_not_fatal(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy in the way: a page in Latin-1 (not UTF-8), then an empty 200, then a page too long to be an answer.
    rig.peer.script = [
        Answer(502, raw="<h1>Passerelle défaillante</h1>".encode("latin-1")),
        Answer(200, raw=b""),
        Answer(503, raw=b"x" * (2 << 20), headers={"Retry-After": "0"}),
    ]
    caplog.set_level(logging.WARNING, logger="footfall.agent.uploader")
    await rig.buffer.append([count(i) for i in range(3)])
    async with running(rig.uploader()):
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain")
    assert [s.status for s in rig.peer.seen] == [502, 200, 503, 200]
    retried = [r.fields["error"] for r in caplog.records if r.getMessage() == "upload_retry"]  # type: ignore[attr-defined]
    assert len(retried) == 3, retried
    assert retried[0] == "collector answered 502: <h1>Passerelle d\ufffdfaillante</h1>"
    assert "answered 200 without an acked_seq" in retried[1]
    assert "over 1048576 bytes" in retried[2]
    assert accepted_seqs(rig.peer) == [1, 2, 3]


async def test_a_skewed_clock_is_corrected_from_the_server_time(rig: Rig) -> None:
    rig.peer.clock_offset = 3600.0
    written = [count(i) for i in range(3)]
    await rig.buffer.append(written)
    async with running(rig.uploader()) as uploader:
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain")
    assert [s.status for s in rig.peer.seen] == [401, 200]
    assert uploader.status.clock_offset_s == pytest.approx(3600, abs=2)
    assert _content(rig.peer.accepted) == _content(written), "record times are never shifted"


async def test_a_revoked_agent_keeps_its_data_says_reenroll_and_resumes_after_enrollment(rig: Rig) -> None:
    rig.peer.revoked = {"agt_rig"}
    await rig.buffer.append([count(i) for i in range(4)])
    async with running(rig.uploader()) as uploader:
        await eventually(
            lambda: uploader.status.state == "re-enroll" and uploader.status.retries >= 2, what="re-enroll"
        )
        assert (await rig.buffer.stats()).depth == 4
        assert "re-enroll" in uploader.status.last_error
        identity = await enroll(rig.state_dir, rig.peer.url, "ffe_test", force=True)
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain after re-enrollment")
    assert identity.agent_id == "agt_test1"
    assert rig.peer.high_water == {"agt_test1": 4}
    assert accepted_seqs(rig.peer) == [1, 2, 3, 4]
    assert rig.violations == []


async def test_a_full_batch_wakes_the_uploader_at_once(rig: Rig) -> None:
    patient = UploadSection(max_records=10, max_bytes=1 << 20, max_age=3600, backoff_initial=0.01, backoff_max=0.05)
    async with running(rig.uploader(patient)):
        await rig.buffer.append([count(i) for i in range(10)])
        await eventually(lambda: drained(rig.buffer), within=5, what="a full batch to go without waiting max_age")
    assert accepted_seqs(rig.peer) == list(range(1, 11))


async def test_a_buffer_whose_numbering_went_backwards_is_renumbered_not_lost(rig: Rig) -> None:
    rig.peer.high_water["agt_rig"] = 1000  # the collector already has seqs this (new) buffer never gave out
    await rig.buffer.append([count(i) for i in range(5)])
    async with running(rig.uploader()):
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain")
    assert accepted_seqs(rig.peer) == [1001, 1002, 1003, 1004, 1005]
    assert [r.entries for r in sorted(rig.peer.accepted, key=lambda r: r.seq)] == [0, 1, 2, 3, 4]
    assert await rig.buffer.append([count(9)]) == [1006]


async def test_a_collector_that_is_away_costs_nothing(rig: Rig, tmp_path: Path) -> None:
    await rig.buffer.append([count(i) for i in range(3)])
    await rig.peer.stop()
    async with running(rig.uploader()) as uploader:
        await eventually(lambda: uploader.status.retries >= 3, what="retries against a closed port")
        assert "cannot reach the collector" in uploader.status.last_error
        assert (await rig.buffer.stats()).depth == 3


def _content(records: list[Record]) -> list[tuple[object, ...]]:
    return sorted((r.start_ms, r.entries, r.exits) for r in records if isinstance(r, Count))


async def test_a_batch_that_times_out_is_halved_and_the_limit_recovers_when_uploads_are_quick(rig: Rig) -> None:
    # Over this "uplink" a batch of 8 records takes 0.4 s, longer than the uploader's timeout; 4 take 0.2 s.
    rig.peer.slow_per_record = 0.05
    await rig.buffer.append([count(i) for i in range(20)])
    async with running(rig.uploader(timeout=0.3)) as uploader:
        await eventually(lambda: drained(rig.buffer), within=30, what="the buffer to drain over a slow uplink")
        assert uploader.status.batch_limit == 4 and uploader.status.splits >= 1
        # Every record arrived once (a timed-out batch the peer took anyway comes back as duplicates).
        assert accepted_seqs(rig.peer) == list(range(1, 21))
        assert not rig.violations

        rig.peer.slow_per_record = 0
        await rig.buffer.append([count(i) for i in range(20, 60)])
        await eventually(lambda: drained(rig.buffer), what="the buffer to drain once the uplink is quick")
        assert uploader.status.batch_limit == FAST.max_records
    assert accepted_seqs(rig.peer) == list(range(1, 61))


async def test_records_dropped_at_the_bound_are_never_sent_and_the_gaps_are_exact(
    tmp_path: Path, peer: PeerCollector
) -> None:
    state_dir = tmp_path / "state"
    key = signing.generate_key()
    write_key(state_dir, key)
    save_identity(state_dir, Identity("agt_rig", peer.url, "acme", "store-12", "Europe/Paris", "2026-03-08T00:00:00Z"))
    peer.keys["agt_rig"] = signing.public_bytes(key)
    # The collector is unavailable while readings pile up far past the buffer's bound.
    peer.script = [Answer(503, {"error": "unavailable"}, {"Retry-After": "0"})] * 40
    async with Buffer(tmp_path / "small.sqlite", max_size=20_000, commit_interval=0) as small:
        rig = Rig(small, peer, state_dir, load_identity(state_dir), [])
        async with running(rig.uploader()):
            for i in range(0, 1000, 20):
                await small.append([count(j) for j in range(i, i + 20)])
            await eventually(lambda: drained(small), within=30, what="the buffer to drain")
        stats = await small.stats()
    assert stats.dropped_records > 0
    sent = accepted_seqs(peer)
    lost = _covered(peer.accepted)
    assert not lost & set(sent), "a record reported lost was sent as well"
    assert lost | set(sent) == set(range(1, stats.next_seq))
    assert len(lost) == stats.dropped_records


def _covered(records: list[Record]) -> set[int]:
    """Seqs the gap events among `records` report lost."""
    out: set[int] = set()
    for r in records:
        if isinstance(r, SensorEvent) and r.kind == "gap":
            out.update(range(r.lost_first, r.lost_last + 1))
    return out
