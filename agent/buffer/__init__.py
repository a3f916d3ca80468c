"""The agent's durable buffer: every reading is committed to SQLite before anyone is told it was taken.

## Guarantees

Each names the file that keeps it. tests/agent/buffer/ proves them, grouped as Vector's disk
buffer groups its own: invariants (1-5), size limits (6), known errors (7), initialization,
and the clock (8); the ledger's rules are tested on their own.

1. Taken means durable (writer.py, schema.py). A write returns only after its transaction has
   committed with `journal_mode=WAL` and `synchronous=FULL`. A device gets its 2xx, and may
   delete its own copy, only after that, so the last commits must survive a power cut: with
   FULL, SQLite fsyncs the WAL at every commit. NORMAL (WAL's usual pairing) would fsync only
   at checkpoints, and a power cut could take back readings a device had already been told
   were stored. The cost of an fsync on a gateway's SD card (1-20 ms) is paid once per group
   commit, not once per reading (guarantee 4).
2. Sequence numbers (ledger.py, txn.py). Every record gets a `seq` when it is committed:
   strictly increasing, never reused, surviving restarts (`next_seq` lives in the `meta` table
   and only grows; it moves forward past the collector's high-water mark if the buffer was
   ever lost, see `rebase`). Records are stored packed (`protocol.envelope.pack_record`), seq
   included, so an upload splices stored bytes.
3. State rides with records (txn.py). A write is a function run inside the transaction
   (`Txn`): counter state and dedupe keys it reads and updates commit or roll back together
   with the records they produced, so a crash can neither lose nor repeat an interval.
4. Group commit (writer.py). Writers enqueue their function and await its commit; the writer
   thread commits at most once per `commit_interval` (the first write after opening at once,
   however recently the machine booted), with every write that arrived meanwhile (and, when
   the window is over, every write already waiting in the queue: with a window of 0 a burst
   of writers still shares one fsync), each in a SAVEPOINT so one failing write fails alone.
   Acks are not worth an fsync and do not wait for the window: each commits at once with
   `synchronous=NORMAL` (a power cut that undoes one only makes a re-send the collector drops
   as a duplicate) and rides on the next durable commit.
5. Delete only after ack (txn.py, requeue.py). Records leave the buffer when the collector's
   2xx acknowledges them (`ack`), or, loudly, into the `rejected` table when the collector
   refused one as malformed (kept for inspection, never silently deleted: `footfall agent
   buffer requeue-rejected` sends them again, with fresh seqs, once a newer agent can make
   them valid), or through guarantee 6.
6. Bounded (overflow.py, ledger.py). The stored bytes (packed size plus a per-row overhead)
   are kept in `meta`, not summed. Past `max_size` the oldest records are dropped down to 90 %
   of it and a `gap` event (sensor "agent") records the exact lost seq range, so the loss is
   visible upstream. A dropped gap event's own range is carried into the new one. A gap event
   is never held for a trusted clock (guarantee 8): the range it reports needs no clock, so it
   is queued at once, its time flagged `suspect` while the clock is untrusted
   (`Txn.append_gap`). The ranges are exact: a batch is sent only if none of its records was
   dropped since it was read (`claim`), and while one is being sent (until its ack or
   failure, `release`) dropping waits, so a record that reaches the collector is never also
   reported lost. The bound may therefore be exceeded, for the length of one upload attempt
   (at most `[collector] timeout`), by what arrives meanwhile; `release` drops at once what
   waited (not at the next write, which may be hours away).
7. Never a reused seq, never a crash loop (marks.py, recovery.py; pages.py, salvage.py).
   `buffer.sqlite.marks` keeps a reservation above every seq ever given, written before the
   commit that would pass it, and the last acked seq. On open the file gets `PRAGMA
   quick_check`; a corrupt file (and its -wal/-shm) is moved aside as
   `buffer.sqlite.corrupt-<UTC time>`, a fresh buffer starts at the reservation, and a `gap`
   event names the seqs that were buffered but not acked (the damaged file's own marks when
   they can be read, else the reservation: it may over-report, never under-report). Counter
   state, dedupe keys and held readings are read out of the damaged file page by page
   (pages.py) and carried over, so the next cumulative reading is not a new baseline and a
   device's resend is still recognised; the records themselves come back only with
   `footfall agent buffer salvage` (salvage.py). A file that goes corrupt while running fails
   the agent (`fatal`), whose restart moves it aside. A missing file with marks left (someone
   deleted it) is treated the same way.
8. Clock (held.py, txn.py). Readings timed by the agent while its clock is not trusted
   (agent/clock.py) wait in `pending` with their stamp (boot id, wall-minus-monotonic offset)
   and are not uploaded (gap events excepted, guarantee 6); `restamp` moves them into
   `records` with corrected times (`clock = "restamped"`) or, from an earlier boot, flagged
   `suspect`. Dedupe keys written meanwhile expire relative to the moment the clock is
   trusted, and none are pruned before.

## On-disk layout (schema.py)

`PRAGMA user_version = 2`; version 1 files (no `pending`) are upgraded in place.

  records(seq PK, taken_ms, kind, body)            packed records, oldest first by seq
  rejected(seq PK, taken_ms, rejected_ms, reason, body)
  pending(id PK, boot, offset_ms, taken_ms, body)  agent-timed records waiting for a trusted clock
  meta(key PK, value)                              the ledger: next_seq, acked_seq, bytes, depth, counters
  state(key PK, value)                             counter state as JSON (decode/counters.py), agent.* entries
  seen(scope, key, expires_ms, PK(scope,key))      dedupe keys with their expiry
  buffer.sqlite.marks (beside it)                  the seq reservation and acked mark (marks.py)

## The files

  __init__.py   the `Buffer` API: open and close, write, read_batch/claim/release/ack, reject,
                rebase, restamp, stats and the other reads
  txn.py        `Txn` and `StampedTxn`: what a write does, and every statement that changes a table
  ledger.py     the `meta` numbers and their bookkeeping rules
  writer.py     the writer thread and the group commit
  schema.py     the tables, the connection's pragmas, the upgrade from version 1
  recovery.py   check at open, move a damaged file aside, seed the fresh one
  held.py       where held readings go in time once the clock is trusted
  overflow.py   the size bound and its gap events
  reads.py      the reads between commits, and the read-only views for `status`
  marks.py      the seq marks file
  pages.py      reading a damaged file page by page, trusting nothing
  salvage.py    `footfall agent buffer salvage`
  requeue.py    `footfall agent buffer requeue-rejected`
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from footfall.agent.buffer import reads
from footfall.agent.buffer.errors import BufferCorrupt, BufferError
from footfall.agent.buffer.held import RestampResult
from footfall.agent.buffer.marks import Marks, MarksLocked, marks_path
from footfall.agent.buffer.reads import (
    BufferStats,
    Pending,
    StoredRecord,
    read_stats,
    rejected_by_source,
    unpack_parked,
)
from footfall.agent.buffer.recovery import Quarantine
from footfall.agent.buffer.schema import CLOCK_KEY, QUARANTINE_KEY
from footfall.agent.buffer.txn import StampedTxn, Txn
from footfall.agent.buffer.writer import Writer
from footfall.agent.clock import Stamp, Trust
from footfall.protocol.records import Record, SensorEvent

# The buffer's face for the rest of the agent (intake, uploader, pipeline, status, decode's counter state):
# callers import these from the package; the files behind them are the package's own business.
__all__ = [
    "CLOCK_KEY",
    "QUARANTINE_KEY",
    "Buffer",
    "BufferCorrupt",
    "BufferError",
    "BufferStats",
    "Pending",
    "Quarantine",
    "RestampResult",
    "StampedTxn",
    "StoredRecord",
    "Txn",
    "read_stats",
    "rejected_by_source",
    "unpack_parked",
]

T = TypeVar("T")


class Buffer:
    """The SQLite buffer. `await open()`, then `write`/`read_batch`/`ack`; `await close()` at the end."""

    def __init__(
        self,
        path: Path,
        *,
        max_size: int,
        commit_interval: float,
        clock: Callable[[], float] = time.time,
        stamps: Callable[[], Stamp] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.commit_interval = commit_interval
        # `monotonic` times the commit window; injectable because it reads only seconds on a gateway that just booted.
        self._monotonic = monotonic
        self._writer = Writer(
            self.path, max_size=max_size, commit_interval=commit_interval, clock=clock, monotonic=monotonic,
            stamps=stamps, on_pending=self._set_pending, on_corrupt=self._set_fatal,
        )
        self.pending = Pending()
        # Set on every commit that changed what is pending; the uploader waits on it instead of polling.
        self.changed = asyncio.Event()
        # Set when SQLite reports the file damaged while running: the agent must restart (see guarantee 7).
        self.fatal = asyncio.Event()
        self.fatal_reason = ""

    @property
    def marks_path(self) -> Path:
        """The seq marks beside the database (marks.py)."""
        return marks_path(self.path)

    @property
    def commits(self) -> int:
        """Group commits so far (not writes)."""
        return self._writer.commits

    @property
    def quarantined(self) -> Quarantine | None:
        """The damaged file moved aside by this open, if any."""
        return self._writer.quarantined

    async def open(self) -> None:
        """Check the file (moving a corrupt one aside), open it and start the writer thread."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(
                f"cannot make the folder of the buffer {self.path}: {exc.strerror or exc}; check [agent] state_dir"
            ) from None
        try:
            marks = Marks.open(self.marks_path, monotonic=self._monotonic)
        except MarksLocked:
            raise BufferError(
                f"another footfall process is using {self.path} (a second agent with the same state_dir?); "
                "stop it first"
            ) from None
        except OSError as exc:
            raise BufferError(f"cannot open {self.marks_path}: {exc}") from None
        await self._writer.start(marks)

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the database."""
        await self._writer.stop()

    async def __aenter__(self) -> Buffer:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, fn: Callable[[Txn], T], *, durable: bool = True) -> T:
        """Run `fn` inside the next group commit and return its result once that commit is durable.

        If `fn` raises, only its own changes are rolled back and the exception comes back
        here; if the commit fails, BufferError says why and nothing of `fn` was taken.
        `durable=False` is for writes a power cut may undo harmlessly (acks): they commit
        without their own fsync when no durable write shares the group.
        """
        return await self._submit(fn, write=True, durable=durable)

    async def append(self, records: list[Record]) -> list[int]:
        """Commit `records` and return their seqs."""
        return await self.write(lambda txn: [txn.append(r) for r in records])

    async def ping(self) -> None:
        """Return once the writer thread has served a trivial read (the watchdog's sign of life)."""
        await self._submit(lambda conn: None, write=False)

    async def read_batch(self, max_records: int, max_bytes: int) -> list[StoredRecord]:
        """The oldest committed records, at most `max_records` and `max_bytes` (but at least one)."""
        return await self._submit(lambda conn: reads.batch(conn, max_records, max_bytes), write=False)

    async def ack(self, acked_seq: int) -> int:
        """Delete every record with seq <= `acked_seq` (the collector has it); returns how many."""
        # A lost ack only makes the uploader send those records again; the collector drops them.
        return await self.write(lambda txn: txn.ack(acked_seq), durable=False)

    async def claim(self, first: int, last: int, count: int) -> bool:
        """Mark records `first`..`last` as being sent, if all `count` of them are still buffered.

        False when an overflow dropped some since they were read (the gap event already counts
        them as lost, so they must not be sent): read the batch again. Checked and marked in the
        writer thread, between commits, so no drop can slip in between. `release` when done.
        """

        def check(conn: sqlite3.Connection) -> bool:
            whole = reads.count_between(conn, first, last) == count
            self._writer.in_flight = (first, last) if whole else None
            return whole

        return await self._submit(check, write=False)

    def release(self) -> None:
        """The claimed batch is acked, refused or failed: overflow may drop again, at once if it was held back."""
        self._writer.release()

    async def reject(self, seq: int, reason: str) -> bool:
        """Move one record the collector refused as malformed into `rejected`, with the reason."""
        return await self.write(lambda txn: txn.park(seq, reason))

    async def rebase(self, high_water: int) -> int:
        """Renumber every buffered record above the collector's `high_water` mark; returns how many moved.

        The collector drops any seq at or below its mark as a duplicate. If it reports a mark
        above what this buffer ever sent, this buffer's numbering went backwards (the file was
        lost or restored from a copy): the records it holds were never received, so they get
        fresh seqs past the mark instead of being dropped upstream.
        """
        return await self.write(lambda txn: txn.renumber(high_water))

    async def restamp(self, trust: Trust, stamp: Stamp) -> RestampResult:
        """Move every held record into the upload queue, its times corrected or flagged (held.py, guarantee 8)."""
        return await self.write(lambda txn: txn.restamp(trust, stamp))

    async def save_clock(self, state: dict[str, Any], untrusted_event: str | None) -> None:
        """Keep the clock's state for the next start, and record why it is untrusted (held until it is)."""

        def save(txn: Txn) -> None:
            txn.put_state(CLOCK_KEY, state)
            if untrusted_event is not None:
                txn.append_agent_event(SensorEvent("agent", txn.now_ms, "clock", f"clock untrusted: {untrusted_event}"))

        await self.write(save)

    async def get_state(self, key: str) -> dict[str, Any] | None:
        """A state entry (counter state, agent.* entries) as committed."""
        return await self._submit(lambda conn: reads.state(conn, key), write=False)

    async def pragmas(self) -> dict[str, str]:
        """The writer connection's journal mode and synchronous level (guarantee 1)."""
        return await self._submit(reads.pragmas, write=False)

    async def stats(self) -> BufferStats:
        """Depth, bytes, oldest unsent record's time, last ack and the dropped counts."""
        return await self._submit(lambda conn: reads.stats(conn, self.max_size), write=False)

    async def rejected(self) -> list[tuple[int, str, Record]]:
        """Every rejected record with its reason, for inspection."""
        return await self._submit(reads.rejected, write=False)

    async def records(self) -> list[Record]:
        """Every buffered record, oldest first (for tests, `status --records` and debugging)."""
        return await self._submit(reads.records, write=False)

    async def held(self) -> list[tuple[str, int, Record]]:
        """Every record held for a trusted clock, as (boot id, offset ms, record), oldest first."""
        return await self._submit(reads.held, write=False)

    async def _submit(self, fn: Callable[[Any], T], *, write: bool, durable: bool = True) -> T:
        return await self._writer.submit(fn, write=write, durable=durable)

    def _set_pending(self, snapshot: Pending) -> None:
        self.pending = snapshot
        self.changed.set()

    def _set_fatal(self, reason: str) -> None:
        self.fatal_reason = reason
        self.fatal.set()
