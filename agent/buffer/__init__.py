"""The agent's durable buffer: every reading is committed to SQLite before anyone is told it was taken.

Guarantees (each one is proven by tests/agent/test_buffer.py):

1. Taken means durable. A write returns only after its transaction has committed with
   `journal_mode=WAL` and `synchronous=FULL`. A device gets its 2xx, and may delete its own
   copy, only after that, so the last commits must survive a power cut: with FULL, SQLite
   fsyncs the WAL at every commit. NORMAL (WAL's usual pairing) would fsync only at
   checkpoints, and a power cut could take back readings a device had already been told
   were stored. The cost of an fsync on a gateway's SD card (1-20 ms) is paid once per
   group commit, not once per reading (guarantee 4).
2. Sequence numbers. Every record gets a `seq` when it is committed: strictly increasing,
   never reused, surviving restarts (`next_seq` lives in the `meta` table and only grows; it
   moves forward past the collector's high-water mark if the buffer was ever lost, see
   `rebase`). Records are stored packed (`protocol.envelope.pack_record`), seq included,
   so an upload splices stored bytes.
3. State rides with records. A write is a function run inside the transaction (`Txn`):
   counter state and dedupe keys it reads and updates commit or roll back together with
   the records they produced, so a crash can neither lose nor repeat an interval.
4. Group commit. Writers enqueue their function and await its commit; the writer thread
   commits at most once per `commit_interval` (the first write after opening at once, however
   recently the machine booted), with every write that arrived meanwhile
   (and, when the window is over, every write already waiting in the queue: with a window
   of 0 a burst of writers still shares one fsync), each in a SAVEPOINT so one failing
   write fails alone. Acks do not wait for the window: each commits at once, without an
   fsync (a power cut that undoes one only makes a re-send the collector drops).
5. Delete only after ack. Records leave the buffer when the collector's 2xx acknowledges
   them (`ack`), or, loudly, into the `rejected` table when the collector refused one as
   malformed (kept for inspection, never silently deleted: `requeue_rejected` sends them
   again, with fresh seqs, once a newer agent can make them valid), or through guarantee 6.
6. Bounded. The stored bytes (packed size plus a per-row overhead) are kept in `meta`, not
   summed. Past `max_size` the oldest records are dropped down to 90 % of it and a `gap`
   event (sensor "agent") records the exact lost seq range, so the loss is visible upstream.
   A dropped gap event's own range is carried into the new one. A gap event is never held
   for a trusted clock (guarantee 8): the range it reports needs no clock, so it is queued
   at once, its time flagged `suspect` while the clock is untrusted (`Txn.append_gap`). The
   ranges are exact: a batch is sent only if none of its records was dropped since it was
   read (`claim`), and while one is being sent (until its ack or failure, `release`) dropping
   waits, so a record that reaches the collector is never also reported lost. The bound may
   therefore be exceeded, for the length of one upload attempt (at most `[collector]
   timeout`), by what arrives meanwhile; `release` drops at once what waited (not at the next
   write, which may be hours away).

7. Never a reused seq, never a crash loop. `buffer.sqlite.marks` (agent/marks.py) keeps a
   reservation above every seq ever given, written before the commit that would pass it,
   and the last acked seq. On open the file gets `PRAGMA quick_check`; a corrupt file (and
   its -wal/-shm) is moved aside as `buffer.sqlite.corrupt-<UTC time>`, a fresh buffer starts
   at the reservation, and a `gap` event names the seqs that were buffered but not acked
   (the damaged file's own marks when they can be read, else the reservation: it may
   over-report, never under-report). Counter state, dedupe keys and held readings are read
   out of the damaged file (agent/salvage.py) and carried over, so the next cumulative
   reading is not a new baseline and a device's resend is still recognised; the records
   themselves come back only with `footfall agent buffer salvage` (agent/buffer_tools.py).
   A file that goes corrupt while running fails the agent (`fatal`), whose restart moves
   it aside. A missing file with marks left (someone deleted it) is treated the same way.
8. Clock. Readings timed by the agent while its clock is not trusted (agent/clock.py) wait
   in `pending` with their stamp (boot id, wall-minus-monotonic offset) and are not
   uploaded (gap events excepted, guarantee 6); `restamp` moves them into `records` with corrected times (`clock =
   "restamped"`) or, from an earlier boot, flagged `suspect`. Dedupe keys written meanwhile
   expire relative to the moment the clock is trusted, and none are pruned before.
   Acks are not worth an fsync: they commit with `synchronous=NORMAL` (a lost ack means
   a re-send the collector drops as a duplicate) and ride on the next durable commit.

Why a dedicated thread: sqlite3 blocks, and the group-commit window needs one owner that
collects writes, opens one transaction, applies them in order and fsyncs once. A thread
owning the only writing connection does that with a blocking queue and no polling; the
event loop only enqueues and awaits futures. Reads go through the same thread (they are
small and indexed) and see committed data only, because writes are applied at commit time,
never left open between commits: the uploader can never send a record that is not durable.

On-disk layout (`PRAGMA user_version = 2`; version 1 files are upgraded in place):
  records(seq PK, taken_ms, kind, body)       packed records, oldest first by seq
  rejected(seq PK, taken_ms, rejected_ms, reason, body)
  pending(id PK, boot, offset_ms, taken_ms, body)  agent-timed records waiting for a trusted clock
  meta(key PK, value)                          next_seq, acked_seq, bytes, depth, wall_high_ms, counters
  state(key PK, value)                         counter state as JSON (decode/counters.py), agent.* entries
  seen(scope, key, expires_ms, PK(scope,key))  dedupe keys with their expiry
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgpack
from footfall.agent.buffer import pages
from footfall.agent.buffer.marks import Marks, MarksLocked
from footfall.agent.clock import STEP_MS, Stamp, Trust
from footfall.protocol.envelope import pack_record, unpack_record
from footfall.protocol.errors import MalformedBatch
from footfall.protocol.records import RECORD_TYPES, ClockQuality, Count, Record, SensorEvent, Transaction, validate

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")

T = TypeVar("T")
SCHEMA_VERSION = 2
# What a row costs beyond its packed body (key, time, kind, b-tree cell): counted so that a
# buffer of tiny records is still bounded in bytes on disk, not only in payload.
ROW_OVERHEAD = 48
# Dropping down to 90 % of the bound on overflow writes one gap event per tenth of the
# buffer, instead of one per commit while an uplink is down for days.
LOW_WATER = 0.9
# Dedupe keys are bounded in time by their expiry and in number by this cap (oldest expiry first).
SEEN_KEYS_MAX = 500_000
PRUNE_EVERY_S = 60.0
# Dedupe keys taken while the clock is untrusted expire this far above their window, until
# `restamp` knows the true time and rebases them (an expiry computed from 1970 would be gone at once).
PENDING_EXPIRY = 1 << 60
QUARANTINE_KEY = "agent.quarantine"
CLOCK_KEY = "agent.clock"
SALVAGED_KEY = "agent.salvaged"
_META_DEFAULTS = {
    "next_seq": 1,
    "acked_seq": 0,
    "bytes": 0,
    "depth": 0,
    "last_ack_ms": 0,
    "dropped_records": 0,
    "gap_events": 0,
    "rejected": 0,
    "wall_high_ms": 0,
    "restamped": 0,
    "suspect": 0,
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, kind TEXT NOT NULL,
                                    body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, rejected_ms INTEGER NOT NULL,
                                     reason TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (scope TEXT NOT NULL, key TEXT NOT NULL, expires_ms INTEGER NOT NULL,
                                 PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_ms);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY, boot TEXT NOT NULL, offset_ms INTEGER NOT NULL,
                                    taken_ms INTEGER NOT NULL, body BLOB NOT NULL);
"""


class BufferError(Exception):
    """The buffer could not commit (disk full, I/O error, closed): nothing of the write was taken."""

    retryable = True


class BufferCorrupt(BufferError):
    """SQLite found the file damaged while running; a restart moves it aside and starts a fresh one."""

    retryable = False


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One buffered record as the uploader sends it."""

    seq: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Pending:
    """What waits to be uploaded, as of the last commit (kept in memory on the event loop)."""

    depth: int = 0
    bytes: int = 0
    oldest_taken_ms: int = 0


@dataclass(frozen=True, slots=True)
class BufferStats:
    """The buffer's numbers for `status`, the heartbeat and metrics."""

    depth: int
    bytes: int
    max_size: int
    oldest_taken_ms: int
    next_seq: int
    acked_seq: int
    last_ack_ms: int
    dropped_records: int
    gap_events: int
    rejected: int
    held: int = 0
    # Records refused by the collector and parked now (`rejected` counts every refusal ever), and the newest's reason.
    rejected_parked: int = 0
    rejected_reason: str = ""
    rejected_at_ms: int = 0
    restamped: int = 0
    suspect: int = 0
    wall_high_ms: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The stats as plain JSON-ready values."""
        return asdict(self)


class Txn:
    """The open transaction a write function runs in: append records, read and update derived state.

    `stamp` is the agent clock at this commit (None: no agent clock, the wall clock is trusted).
    """

    def __init__(
        self, conn: sqlite3.Connection, meta: dict[str, int], now_ms: int, stamp: Stamp | None = None
    ) -> None:
        self._conn = conn
        self.meta = meta
        self.now_ms = now_ms
        self.stamp = stamp

    @property
    def trusted(self) -> bool:
        """Whether the wall clock can be believed at this commit."""
        return self.stamp is None or self.stamp.trusted

    def hold(self, record: Record, stamp: Stamp, *, taken_ms: int | None = None) -> None:
        """Keep an agent-timed record aside (no seq yet) until the clock is trusted; see `Buffer.restamp`."""
        self._conn.execute(
            "INSERT INTO pending (boot, offset_ms, taken_ms, body) VALUES (?, ?, ?, ?)",
            (stamp.boot_id, stamp.offset_ms, self.now_ms if taken_ms is None else taken_ms,
             pack_record(replace(record, seq=1))),
        )

    def append_agent_event(self, record: SensorEvent) -> int:
        """An event the agent itself times (`at_ms` = now): appended, or held while the clock is untrusted."""
        if self.stamp is None or self.stamp.trusted:
            return self.append(record)
        self.hold(record, self.stamp)
        return 0

    def append_gap(self, record: SensorEvent) -> int:
        """A `gap` event, appended at once even while the clock is untrusted (its time then flagged `suspect`).

        What it says, the exact lost seq range, needs no clock. Held like agent-timed readings it would
        stay on the gateway for as long as the clock stays untrusted (for ever without NTP and with a
        clock the collector disagrees with) while the readings after the loss reach the collector:
        the loss would be silent upstream. Returns the seq.
        """
        self.meta["gap_events"] += 1
        return self.append(record if self.trusted else replace(record, clock="suspect"))

    def stamped(self, stamp: Stamp) -> StampedTxn:
        """A view for records whose times come from the agent's clock at `stamp`."""
        return StampedTxn(self, stamp)

    def append(self, record: Record, *, taken_ms: int | None = None) -> int:
        """Give `record` the next seq and store it; returns the seq."""
        seq = self.meta["next_seq"]
        body = pack_record(record, seq=seq)
        kind = "gap" if isinstance(record, SensorEvent) and record.kind == "gap" else record.TYPE
        self._conn.execute(
            "INSERT INTO records (seq, taken_ms, kind, body) VALUES (?, ?, ?, ?)",
            (seq, self.now_ms if taken_ms is None else taken_ms, kind, body),
        )
        self.meta["next_seq"] = seq + 1
        self.meta["bytes"] += len(body) + ROW_OVERHEAD
        self.meta["depth"] += 1
        return seq

    def first_seen(self, scope: str, key: str, keep_ms: int) -> bool:
        """Record a dedupe key for `keep_ms`; True if it was new, False if already taken (a resend)."""
        base = self.now_ms if self.trusted else PENDING_EXPIRY
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO seen (scope, key, expires_ms) VALUES (?, ?, ?)", (scope, key, base + keep_ms)
        )
        return cur.rowcount == 1

    def seen(self, scope: str, key: str) -> bool:
        """Whether a dedupe key was taken and has not expired (without taking it)."""
        row = self._conn.execute(
            "SELECT 1 FROM seen WHERE scope = ? AND key = ? AND expires_ms > ?", (scope, key, self.now_ms)
        ).fetchone()
        return row is not None

    def get_state(self, key: str) -> dict[str, Any] | None:
        """Derived state saved under `key` (a cumulative counter's last reading), or None."""
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """Save derived state; it commits with the records of the same transaction."""
        self._conn.execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value, sort_keys=True))
        )


class StampedTxn:
    """The transaction as seen by records timed by the agent's clock at `stamp` (implements CounterState).

    Such a record is appended as usual when `stamp` was trusted; re-stamped at once when the
    clock became trusted in the same boot before this commit; otherwise held in `pending`.
    """

    def __init__(self, txn: Txn, stamp: Stamp) -> None:
        self.txn = txn
        self.stamp = stamp
        self.now_ms = txn.now_ms

    def append(self, record: Record) -> int:
        """Store a record timed at `stamp`; returns its seq (0 while held)."""
        if self.stamp.trusted:
            return self.txn.append(record)
        now = self.txn.stamp
        if now is not None and now.trusted and now.boot_id == self.stamp.boot_id:
            self.txn.meta["restamped"] += 1
            return self.txn.append(shift_times(record, clock_shift(self.stamp.offset_ms, now.offset_ms), "restamped"))
        self.txn.hold(record, self.stamp)
        return 0

    def first_seen(self, scope: str, key: str, keep_ms: int) -> bool:
        """See Txn.first_seen."""
        return self.txn.first_seen(scope, key, keep_ms)

    def seen(self, scope: str, key: str) -> bool:
        """See Txn.seen."""
        return self.txn.seen(scope, key)

    def get_state(self, key: str) -> dict[str, Any] | None:
        """See Txn.get_state."""
        return self.txn.get_state(key)

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """See Txn.put_state."""
        self.txn.put_state(key, value)


def clock_shift(recorded_offset_ms: int, trusted_offset_ms: int) -> int:
    """How far a record stamped at one offset moves to the trusted one: nothing unless the clock stepped between."""
    delta = trusted_offset_ms - recorded_offset_ms
    # Offsets closer than a step are one clock read at different instants (millisecond rounding).
    return delta if abs(delta) > STEP_MS else 0


def shift_times(record: Record, delta_ms: int, clock: ClockQuality) -> Record:
    """`record` with every time moved by `delta_ms`; its clock quality becomes `clock` unless already suspect."""
    quality: ClockQuality = record.clock if record.clock == "suspect" else clock
    if isinstance(record, Count):
        return replace(record, start_ms=record.start_ms + delta_ms, end_ms=record.end_ms + delta_ms, clock=quality)
    return replace(record, at_ms=record.at_ms + delta_ms, clock=quality)


def _latest_ms(record: Record) -> int:
    return record.end_ms if isinstance(record, Count) else record.at_ms


@dataclass(frozen=True, slots=True)
class RestampResult:
    """What one `Buffer.restamp` did."""

    restamped: int = 0
    suspect: int = 0
    boots: int = 0
    shift_ms: int = 0


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Any], T]
    future: asyncio.Future[T]
    write: bool
    durable: bool = True


_STOP = object()
# Queued by `release`: drop down to the bound now if overflow waited for the batch in flight.
_TRIM = object()


@dataclass(slots=True)
class RequeueResult:
    """What `Buffer.requeue_rejected` did (or, in a dry run, would do)."""

    requeued: int = 0
    repaired: int = 0
    still_invalid: int = 0
    duplicates: int = 0
    first_seq: int = 0
    last_seq: int = 0


class _RolledBack(Exception):
    """Raised inside a write to roll it back and carry its result out (dry runs)."""

    def __init__(self, result: RequeueResult) -> None:
        super().__init__("dry run")
        self.result = result


def unpack_parked(body: bytes) -> Record:
    """A stored record as it was packed, without today's validation.

    What an older agent parked may break a rule added since (a NUL in a receipt's text): it must
    still be readable, to be shown, counted and repaired (`requeue_rejected` validates after).
    """
    wire = msgpack.unpackb(body, raw=False)
    return RECORD_TYPES[wire.pop("type")](**wire)


def _reading_key(record: Record) -> tuple[str, str] | None:
    """What tells two copies of one reading apart from two readings (events have no such key)."""
    if isinstance(record, Transaction):
        return f"txn{record.terminal}", f"{record.kind}\x1f{record.txn_id}"
    if isinstance(record, Count):
        return f"count{record.sensor}\x1f{record.line}", f"{record.start_ms}\x1f{record.end_ms}"
    return None


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A damaged buffer file moved aside, and what the fresh buffer knows about what it held."""

    file: str
    at_ms: int
    reason: str
    acked: int
    lost_first: int
    lost_last: int
    next_seq: int
    carried_state: int = 0
    carried_keys: int = 0
    carried_held: int = 0
    # Counter state key -> the reading time the fresh buffer resumed from (salvage skips what it re-covers).
    resumed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


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
        self._clock = clock
        # Times the commit window; injectable because it reads only seconds on a gateway that just booted.
        self._monotonic = monotonic
        self._stamps = stamps
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meta: dict[str, int] = {}
        self._marks: Marks | None = None
        self._sync_full = True
        self.pending = Pending()
        # Set on every commit that changed what is pending; the uploader waits on it instead of polling.
        self.changed = asyncio.Event()
        # Set when SQLite reports the file damaged while running: the agent must restart (see guarantee 7).
        self.fatal = asyncio.Event()
        self.fatal_reason = ""
        # Commits so far (group commits, not writes): written by the writer thread only.
        self.commits = 0
        # The damaged file moved aside by this open, if any.
        self.quarantined: Quarantine | None = None
        self._closed = False
        # The seq range of the batch being sent (guarantee 6): set in the writer thread by `claim`,
        # cleared by `release`; overflow drops wait while it is set.
        self._in_flight: tuple[int, int] | None = None

    @property
    def marks_path(self) -> Path:
        """The seq marks beside the database (agent/marks.py)."""
        return marks_path(self.path)

    async def open(self) -> None:
        """Check the file (moving a corrupt one aside), open it and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(
                f"cannot make the folder of the buffer {self.path}: {exc.strerror or exc}; check [agent] state_dir"
            ) from None
        try:
            self._marks = Marks.open(self.marks_path, monotonic=self._monotonic)
        except MarksLocked:
            raise BufferError(
                f"another footfall process is using {self.path} (a second agent with the same state_dir?); "
                "stop it first"
            ) from None
        except OSError as exc:
            raise BufferError(f"cannot open {self.marks_path}: {exc}") from None
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"footfall-buffer:{self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the database."""
        if self._thread is None:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

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

        def read(conn: sqlite3.Connection) -> list[StoredRecord]:
            out: list[StoredRecord] = []
            size = 0
            for seq, body in conn.execute("SELECT seq, body FROM records ORDER BY seq LIMIT ?", (max_records,)):
                if out and size + len(body) > max_bytes:
                    break
                out.append(StoredRecord(seq, body))
                size += len(body)
            return out

        return await self._submit(read, write=False)

    async def ack(self, acked_seq: int) -> int:
        """Delete every record with seq <= `acked_seq` (the collector has it); returns how many."""

        def delete(txn: Txn) -> int:
            conn = txn._conn
            rows = conn.execute("DELETE FROM records WHERE seq <= ? RETURNING length(body)", (acked_seq,)).fetchall()
            txn.meta["bytes"] -= sum(r[0] for r in rows) + ROW_OVERHEAD * len(rows)
            txn.meta["depth"] -= len(rows)
            txn.meta["acked_seq"] = max(txn.meta["acked_seq"], acked_seq)
            txn.meta["last_ack_ms"] = txn.now_ms
            return len(rows)

        # A lost ack only makes the uploader send those records again; the collector drops them.
        return await self.write(delete, durable=False)

    async def claim(self, first: int, last: int, count: int) -> bool:
        """Mark records `first`..`last` as being sent, if all `count` of them are still buffered.

        False when an overflow dropped some since they were read (the gap event already counts
        them as lost, so they must not be sent): read the batch again. Checked and marked in the
        writer thread, between commits, so no drop can slip in between. `release` when done.
        """

        def check(conn: sqlite3.Connection) -> bool:
            query = "SELECT count(*) FROM records WHERE seq BETWEEN ? AND ?"
            (present,) = conn.execute(query, (first, last)).fetchone()
            self._in_flight = (first, last) if present == count else None
            return present == count

        return await self._submit(check, write=False)

    def release(self) -> None:
        """The claimed batch is acked, refused or failed: overflow may drop again, at once if it was held back."""
        self._in_flight = None
        if self._thread is not None and not self._closed:
            # Writes that came while the batch was out could not drop the oldest; without this the
            # buffer would stay over its bound until the next write, hours away in a quiet store.
            self._queue.put(_TRIM)

    async def reject(self, seq: int, reason: str) -> bool:
        """Move one record the collector refused as malformed into `rejected`, with the reason."""

        def move(txn: Txn) -> bool:
            conn = txn._conn
            row = conn.execute("DELETE FROM records WHERE seq = ? RETURNING taken_ms, body", (seq,)).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO rejected (seq, taken_ms, rejected_ms, reason, body) VALUES (?, ?, ?, ?, ?)",
                (seq, row[0], txn.now_ms, reason, row[1]),
            )
            txn.meta["bytes"] -= len(row[1]) + ROW_OVERHEAD
            txn.meta["depth"] -= 1
            txn.meta["rejected"] += 1
            return True

        return await self.write(move)

    async def rebase(self, high_water: int) -> int:
        """Renumber every buffered record above the collector's `high_water` mark; returns how many moved.

        The collector drops any seq at or below its mark as a duplicate. If it reports a mark
        above what this buffer ever sent, this buffer's numbering went backwards (the file was
        lost or restored from a copy): the records it holds were never received, so they get
        fresh seqs past the mark instead of being dropped upstream.
        """

        def renumber(txn: Txn) -> int:
            conn = txn._conn
            rows = conn.execute("SELECT seq, taken_ms, kind, body FROM records ORDER BY seq").fetchall()
            txn.meta["next_seq"] = max(txn.meta["next_seq"], high_water + 1)
            conn.execute("DELETE FROM records")
            txn.meta["bytes"] = 0
            txn.meta["depth"] = 0
            for _, taken_ms, _kind, body in rows:
                txn.append(unpack_record(body), taken_ms=taken_ms)
            return len(rows)

        return await self.write(renumber)

    async def restamp(self, trust: Trust, stamp: Stamp) -> RestampResult:
        """Move every held record into the upload queue, its times corrected or flagged (clock.py, guarantee 8).

        Same boot as `trust`: every time moves by (trusted offset - the record's offset), exact.
        Earlier boots: their monotonic clock started at an unknown moment between the last
        trusted commit (`wall_high_ms`) and this boot's start, so each such boot is placed as early
        as it can have been, right after the last trusted commit (or after the boot placed before
        it), kept before this boot began, and its records are flagged `suspect`.
        """

        def move(txn: Txn) -> RestampResult:
            conn = txn._conn
            rows = conn.execute("SELECT id, boot, offset_ms, taken_ms, body FROM pending ORDER BY id").fetchall()
            now_offset = stamp.offset_ms if stamp.trusted else trust.offset_ms
            boot_start = stamp.wall_ms - stamp.mono_ms if stamp.trusted else 0
            restamped = suspect = 0
            shift = 0
            others: dict[str, list[tuple[int, int, Record]]] = {}
            readings = 0
            # Offsets within a step of each other are one stretch of the same clock (they differ only by
            # millisecond rounding): its records move by one shift, so periods that joined still join.
            stretch: int | None = None
            for _id, boot, offset, taken_ms, body in rows:
                record = unpack_record(body)
                readings += not (isinstance(record, SensorEvent) and record.kind == "clock")
                if boot == trust.boot_id:
                    if stretch is None or abs(offset - stretch) > STEP_MS:
                        stretch = offset
                    shift = clock_shift(stretch, now_offset)
                    txn.append(shift_times(record, shift, "restamped"), taken_ms=taken_ms)
                    restamped += 1
                else:
                    others.setdefault(boot, []).append((offset, taken_ms, record))
            cursor = txn.meta["wall_high_ms"]
            for held in others.values():
                last_mono = max(_latest_ms(record) - offset for offset, _, record in held)
                latest_start = boot_start - last_mono if boot_start else cursor
                start = min(cursor, latest_start) if cursor else latest_start
                for offset, taken_ms, record in held:
                    txn.append(shift_times(record, start - offset, "suspect"), taken_ms=taken_ms)
                    suspect += 1
                cursor = start + last_mono + 1
            conn.execute("DELETE FROM pending")
            conn.execute(
                "UPDATE seen SET expires_ms = expires_ms - ? + ? WHERE expires_ms >= ?",
                (PENDING_EXPIRY, txn.now_ms, PENDING_EXPIRY),
            )
            txn.meta["restamped"] += restamped
            txn.meta["suspect"] += suspect
            if readings:
                detail = f"clock trusted ({trust.source}): re-stamped {restamped} held records by {shift / 1000:+.3f} s"
                if others:
                    detail += f"; {suspect} records of {len(others)} earlier boot(s) never had a trusted clock: suspect"
                txn.append(SensorEvent("agent", txn.now_ms, "clock", detail))
                event(log, "records_restamped", restamped=restamped, suspect=suspect, boots=len(others),
                      shift_ms=shift, source=trust.source)
            return RestampResult(restamped, suspect, len(others), shift)

        return await self.write(move)

    async def save_clock(self, state: dict[str, Any], untrusted_event: str | None) -> None:
        """Keep the clock's state for the next start, and record why it is untrusted (held until it is)."""

        def save(txn: Txn) -> None:
            txn.put_state(CLOCK_KEY, state)
            if untrusted_event is not None:
                txn.append_agent_event(SensorEvent("agent", txn.now_ms, "clock", f"clock untrusted: {untrusted_event}"))

        await self.write(save)

    async def get_state(self, key: str) -> dict[str, Any] | None:
        """A state entry (counter state, agent.* entries) as committed."""

        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self._submit(read, write=False)

    async def pragmas(self) -> dict[str, str]:
        """The writer connection's journal mode and synchronous level (guarantee 1)."""

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            level = conn.execute("PRAGMA synchronous").fetchone()[0]
            return {"journal_mode": str(journal), "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]}

        return await self._submit(read, write=False)

    async def stats(self) -> BufferStats:
        """Depth, bytes, oldest unsent record's time, last ack and the dropped counts."""
        return await self._submit(lambda conn: _stats(conn, self.max_size), write=False)

    async def rejected(self) -> list[tuple[int, str, Record]]:
        """Every rejected record with its reason, for inspection."""

        def read(conn: sqlite3.Connection) -> list[tuple[int, str, Record]]:
            rows = conn.execute("SELECT seq, reason, body FROM rejected ORDER BY seq").fetchall()
            return [(seq, reason, unpack_parked(body)) for seq, reason, body in rows]

        return await self._submit(read, write=False)

    async def requeue_rejected(
        self, fix: Callable[[Record], Record], *, dry_run: bool = False
    ) -> RequeueResult:
        """Send parked records again: each one `fix` makes valid is appended with a fresh seq, in one transaction.

        A parked record never counted upstream (the collector refused its batch), so a fresh seq
        (its old one lies below the collector's high-water mark, which would drop it as a
        duplicate) counts it exactly once. A record still invalid after `fix` stays parked with
        the reason; a second parked copy of one reading (same dedupe key) is dropped, not sent
        twice. Moving and appending share the transaction, so a run interrupted anywhere either
        happened whole or not at all, and a second run finds nothing it already sent.
        """

        def move(txn: Txn) -> RequeueResult:
            conn = txn._conn
            result = RequeueResult()
            taken: set[tuple[str, str]] = set()
            rows = conn.execute("SELECT seq, taken_ms, body FROM rejected ORDER BY seq").fetchall()
            for seq, taken_ms, body in rows:
                parked = unpack_parked(body)
                record = fix(parked)
                try:
                    validate(replace(record, seq=seq))
                except MalformedBatch as exc:
                    conn.execute("UPDATE rejected SET reason = ? WHERE seq = ?", (f"still invalid: {exc}", seq))
                    result.still_invalid += 1
                    continue
                conn.execute("DELETE FROM rejected WHERE seq = ?", (seq,))
                key = _reading_key(record)
                if key is not None and key in taken:
                    result.duplicates += 1
                    continue
                if key is not None:
                    taken.add(key)
                new_seq = txn.append(record, taken_ms=taken_ms)
                result.first_seq = result.first_seq or new_seq
                result.last_seq = new_seq
                result.requeued += 1
                result.repaired += record != parked
            if dry_run:
                raise _RolledBack(result)
            return result

        try:
            return await self.write(move)
        except _RolledBack as rolled:
            return rolled.result

    async def records(self) -> list[Record]:
        """Every buffered record, oldest first (for tests, `status --records` and debugging)."""

        def read(conn: sqlite3.Connection) -> list[Record]:
            return [unpack_record(body) for (body,) in conn.execute("SELECT body FROM records ORDER BY seq")]

        return await self._submit(read, write=False)

    async def held(self) -> list[tuple[str, int, Record]]:
        """Every record held for a trusted clock, as (boot id, offset ms, record), oldest first."""

        def read(conn: sqlite3.Connection) -> list[tuple[str, int, Record]]:
            rows = conn.execute("SELECT boot, offset_ms, body FROM pending ORDER BY id").fetchall()
            return [(boot, offset, unpack_record(body)) for boot, offset, body in rows]

        return await self._submit(read, write=False)

    async def _submit(self, fn: Callable[[Any], T], *, write: bool, durable: bool = True) -> T:
        if self._thread is None or self._loop is None or self._closed:
            raise BufferError(f"the buffer {self.path} is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future, write, durable))
        # A caller that gives up (a device hanging up) cancels only this future: the job stays queued
        # and commits with its group (the writer thread skips resolving a future that is done).
        return await future

    # --- the writer thread -------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        assert self._marks is not None
        try:
            conn = self._open_checked()
        except (sqlite3.Error, OSError, BufferError) as exc:
            self._marks.close()
            error = exc if isinstance(exc, BufferError) else BufferError(f"cannot open the buffer {self.path}: {exc}")
            self._resolve(ready, error)
            return
        self._resolve(ready, None)
        self._publish(conn)
        now = self._monotonic
        # No commit yet, so the first write does not wait for a window. Not 0.0: the monotonic clock
        # counts from boot, and on a gateway up for less than `commit_interval` that would make the
        # first readings (and everything queued behind them) wait for the rest of the window.
        last_commit = now() - self.commit_interval
        last_prune = now()
        group: list[_Job[Any]] = []
        stopping = False
        try:
            while not stopping:
                timeout = None
                if group:
                    timeout = max(0.0, last_commit + self.commit_interval - now())
                try:
                    item = self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
                except queue.Empty:
                    item = None
                if item is _STOP:
                    stopping = True
                elif item is _TRIM:
                    self._trim(conn)
                    continue
                elif isinstance(item, _Job):
                    if item.write and not item.durable:
                        # An ack commits at once, alone and without an fsync: the uploader waits for it
                        # before its next batch, so a backlog would otherwise drain one batch per window.
                        self._commit(conn, [item], prune=False)
                        continue
                    if item.write:
                        group.append(item)
                    else:
                        self._read(conn, item)
                    if not group or now() < last_commit + self.commit_interval:
                        continue
                if group:
                    # Everything already waiting joins this commit: one fsync for all of it.
                    stopping = self._take_waiting(conn, group) or stopping
                    last_commit = now()
                    prune = last_commit - last_prune >= PRUNE_EVERY_S
                    if self._commit(conn, group, prune) and prune:
                        last_prune = last_commit
                    group = []
            self._drain_after_stop(conn)
        finally:
            conn.close()
            self._marks.note(acked=self._meta.get("acked_seq"), wall_high_ms=self._meta.get("wall_high_ms"))
            self._marks.close()

    def _take_waiting(self, conn: sqlite3.Connection, group: list[_Job[Any]]) -> bool:
        """Move the writes already queued into `group` (serving reads on the way); True if a stop was queued."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            if item is _TRIM:
                continue  # the group's commit drops what is over the bound
            if item.write:
                group.append(item)
            else:
                self._read(conn, item)

    def _drain_after_stop(self, conn: sqlite3.Connection) -> None:
        leftovers: list[_Job[Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                leftovers.append(item)
        for job in leftovers:
            self._resolve(job.future, BufferError("the buffer is closing; nothing was written"))

    def _open_checked(self) -> sqlite3.Connection:
        """Open the database; a damaged one is moved aside first and a fresh one seeded (guarantee 7)."""
        assert self._marks is not None
        existed = self.path.exists()
        problem = _check_file(self.path) if existed else None
        found: pages.Found | None = None
        moved = ""
        if problem is not None:
            moved = self._move_aside()
            event(log, "buffer_corrupt", logging.ERROR, path=str(self.path), problem=problem, moved_to=moved)
            found = pages.scan(self.path.with_name(moved))
        conn = self._connect()
        lost_file = not existed and self._marks.existed and self._marks.values.reserved > 1
        if problem is not None or lost_file:
            try:
                self._seed(conn, problem or "the buffer file was missing", moved, found)
            except BaseException:
                conn.close()
                raise
        if self._marks.ensure_reserved(self._meta["next_seq"]):
            event(log, "seq_reserved", level=logging.DEBUG, below=self._marks.values.reserved)
        return conn

    def _move_aside(self) -> str:
        """Rename the damaged file and its -wal/-shm to `<name>.corrupt-<UTC time>[-n]`; returns the new name."""
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{self.path.name}.corrupt-{stamp}"
        name = base
        n = 1
        while self.path.with_name(name).exists():
            name = f"{base}-{n}"
            n += 1
        for suffix in ("-wal", "-shm"):
            companion = self.path.with_name(self.path.name + suffix)
            if companion.exists():
                os.replace(companion, self.path.with_name(name + suffix))
        os.replace(self.path, self.path.with_name(name))
        _fsync_dir(self.path.parent)
        return name

    def _seed(self, conn: sqlite3.Connection, reason: str, moved: str, found: pages.Found | None) -> None:
        """Start the fresh buffer above every seq used before, record the loss, carry state over."""
        assert self._marks is not None
        marks = self._marks.values
        meta = found.meta if found is not None else {}
        acked = max(marks.acked, meta.get("acked_seq", 0))
        known_next = max(meta.get("next_seq", 0), (found.max_seq + 1) if found is not None else 0)
        next_seq = max(marks.reserved, known_next, acked + 1, self._meta["next_seq"])
        # The file's own next_seq is exact when it could be read; otherwise everything up to the reservation.
        lost_last = known_next - 1 if "next_seq" in meta else next_seq - 1
        now_ms = int(self._clock() * 1000)
        stamp = self._stamps() if self._stamps is not None else None
        txn = Txn(conn, dict(self._meta), now_ms, stamp)
        conn.execute("BEGIN IMMEDIATE")
        try:
            txn.meta["next_seq"] = next_seq
            txn.meta["acked_seq"] = acked
            for key in ("dropped_records", "gap_events", "rejected", "restamped", "suspect"):
                txn.meta[key] = max(txn.meta[key], meta.get(key, 0))
            txn.meta["wall_high_ms"] = max(txn.meta["wall_high_ms"], marks.wall_high_ms, meta.get("wall_high_ms", 0))
            resumed: dict[str, int] = {}
            carried_keys = carried_held = 0
            previous: dict[str, Any] = {}
            if found is not None:
                previous = found.state.pop(QUARANTINE_KEY, {}) or {}
                for key, saved in found.state.items():
                    txn.put_state(key, saved)
                    if key.startswith("cumulative") and isinstance(saved.get("at_ms"), int):
                        resumed[key] = saved["at_ms"]
                for scope, key, expires in found.seen:
                    carried_keys += conn.execute(
                        "INSERT OR IGNORE INTO seen (scope, key, expires_ms) VALUES (?, ?, ?)", (scope, key, expires)
                    ).rowcount
                for boot, offset, taken_ms, body in found.pending.values():
                    conn.execute(
                        "INSERT INTO pending (boot, offset_ms, taken_ms, body) VALUES (?, ?, ?, ?)",
                        (boot, offset, taken_ms, body),
                    )
                    carried_held += 1
            info = Quarantine(
                file=moved,
                at_ms=now_ms,
                reason=reason,
                acked=acked,
                lost_first=acked + 1,
                lost_last=lost_last,
                next_seq=next_seq,
                carried_state=len(found.state) if found is not None else 0,
                carried_keys=carried_keys,
                carried_held=carried_held,
                resumed=resumed,
            )
            if lost_last > acked:
                where = f"moved to {moved}; `footfall agent buffer salvage` recovers what it can" if moved else ""
                txn.append_gap(
                    SensorEvent(
                        sensor="agent",
                        at_ms=now_ms,
                        kind="gap",
                        detail=f"buffer lost ({reason}); {where}".rstrip("; "),
                        lost_first=acked + 1,
                        lost_last=lost_last,
                    )
                )
            history = list(previous.get("files", [])) if isinstance(previous, dict) else []
            txn.put_state(QUARANTINE_KEY, {"files": [*history, info.as_dict()]})
            for key, value in txn.meta.items():
                conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            self._marks.ensure_reserved(next_seq)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._meta = txn.meta
        self.quarantined = info
        self._marks.note(acked=acked, force=True)
        event(log, "buffer_quarantined", logging.ERROR, moved_to=moved or "-", reason=reason,
              lost_first=acked + 1, lost_last=lost_last, next_seq=next_seq, carried_state=info.carried_state,
              carried_keys=carried_keys, carried_held=carried_held)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BufferError(
                    f"{self.path} has schema version {version}, newer than this agent's ({SCHEMA_VERSION}); "
                    "upgrade footfall"
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for key, value in _META_DEFAULTS.items():
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            self._meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            # A buffer restored from an older copy must still not reuse what the marks say was acked.
            assert self._marks is not None
            self._meta["next_seq"] = max(self._meta["next_seq"], self._marks.values.acked + 1)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read(self, conn: sqlite3.Connection, job: _Job[Any]) -> None:
        try:
            result = job.fn(conn)
        except (sqlite3.Error, ValueError, TypeError) as exc:
            if isinstance(exc, sqlite3.Error) and _is_corrupt(exc):
                self._corrupt(str(exc))
            self._resolve(job.future, BufferError(f"reading the buffer failed: {exc}"))
        else:
            self._resolve(job.future, result)

    def _commit(self, conn: sqlite3.Connection, group: list[_Job[Any]], prune: bool) -> bool:
        assert self._marks is not None
        now_ms = int(self._clock() * 1000)
        stamp = self._stamps() if self._stamps is not None else None
        before = dict(self._meta)
        txn = Txn(conn, dict(self._meta), now_ms, stamp)
        outcomes: list[Any] = []
        durable = any(job.durable for job in group)
        try:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                saved = dict(txn.meta)
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(txn)
                except sqlite3.Error:
                    raise  # storage trouble (disk full, I/O): the whole group fails below
                # Reason: a write function is caller code (decode, counters); whatever else it raises
                # must fail that caller alone and leave the rest of the group to commit.
                except Exception as exc:  # noqa: BLE001
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    txn.meta = saved
                    outcomes.append(exc)
                else:
                    conn.execute("RELEASE job")
                    outcomes.append(result)
            if txn.meta["bytes"] > self.max_size and self._in_flight is None:
                self._drop_oldest(txn)
            if prune and txn.trusted:
                self._prune_seen(conn, now_ms)
            if txn.trusted:
                txn.meta["wall_high_ms"] = max(txn.meta["wall_high_ms"], now_ms)
            for key, value in txn.meta.items():
                if before.get(key) != value:
                    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            if txn.meta["next_seq"] > self._marks.values.reserved:
                # Before the commit: the marks must be above every seq that is ever committed.
                self._marks.ensure_reserved(txn.meta["next_seq"])
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._meta = before
            event(log, "buffer_commit_failed", logging.ERROR, path=str(self.path), writes=len(group), error=str(exc))
            if isinstance(exc, sqlite3.Error) and _is_corrupt(exc):
                self._corrupt(str(exc))
            failure = BufferError(f"could not commit to {self.path}: {exc}")
            self._resolve_all([(job.future, failure) for job in group])
            return False
        finally:
            if not durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=FULL")
        self._meta = txn.meta
        self.commits += 1
        self._marks.note(acked=txn.meta["acked_seq"], wall_high_ms=txn.meta["wall_high_ms"])
        self._publish(conn)
        # One wake-up of the event loop for the whole group, not one per write.
        self._resolve_all([(job.future, outcome) for job, outcome in zip(group, outcomes, strict=True)])
        return True

    def _trim(self, conn: sqlite3.Connection) -> None:
        """Commit just the overflow drop, if the buffer is over its bound and no batch is out.

        Without an fsync of its own: a power cut that undoes it brings back the records and takes
        their gap event with them, in the same transaction; the next durable commit carries it.
        """
        if self._meta["bytes"] > self.max_size and self._in_flight is None:
            self._commit(conn, [], prune=False)

    def _corrupt(self, reason: str) -> None:
        event(log, "buffer_corrupt", logging.CRITICAL, path=str(self.path), error=reason,
              hint="the agent stops; its restart moves the file aside and starts a fresh buffer")

        def signal() -> None:
            self.fatal_reason = reason
            self.fatal.set()

        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(signal)

    def _drop_oldest(self, txn: Txn) -> None:
        """Drop the oldest records down to the low-water mark and record the loss as gap events."""
        conn = txn._conn
        target = int(self.max_size * LOW_WATER)
        excess = txn.meta["bytes"] - target
        freed = 0
        dropped = 0
        last_seq = 0
        first_seq = 0
        carried: list[tuple[int, int]] = []
        for seq, kind, body_len, body in conn.execute(
            "SELECT seq, kind, length(body), CASE WHEN kind = 'gap' THEN body END FROM records ORDER BY seq"
        ):
            if freed >= excess:
                break
            first_seq = first_seq or seq
            last_seq = seq
            freed += body_len + ROW_OVERHEAD
            dropped += 1
            if kind == "gap":
                old = unpack_record(body)
                assert isinstance(old, SensorEvent)
                carried.append((old.lost_first, old.lost_last))
        if not dropped:
            return
        conn.execute("DELETE FROM records WHERE seq <= ?", (last_seq,))
        txn.meta["bytes"] -= freed
        txn.meta["depth"] -= dropped
        txn.meta["dropped_records"] += dropped
        for lost_first, lost_last in _merge([*carried, (first_seq, last_seq)]):
            txn.append_gap(
                SensorEvent(
                    sensor="agent",
                    at_ms=txn.now_ms,
                    kind="gap",
                    detail=f"buffer over its {self.max_size}-byte bound: dropped the oldest records",
                    lost_first=lost_first,
                    lost_last=lost_last,
                )
            )
        event(log, "buffer_overflow", logging.WARNING, dropped=dropped, lost_first=first_seq, lost_last=last_seq)

    def _prune_seen(self, conn: sqlite3.Connection, now_ms: int) -> None:
        conn.execute("DELETE FROM seen WHERE expires_ms < ?", (now_ms,))
        (count,) = conn.execute("SELECT COUNT(*) FROM seen").fetchone()
        if count > SEEN_KEYS_MAX:
            conn.execute(
                "DELETE FROM seen WHERE (scope, key) IN (SELECT scope, key FROM seen ORDER BY expires_ms LIMIT ?)",
                (count - SEEN_KEYS_MAX,),
            )

    def _publish(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT taken_ms FROM records ORDER BY seq LIMIT 1").fetchone()
        snapshot = Pending(self._meta["depth"], self._meta["bytes"], row[0] if row else 0)
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._set_pending, snapshot)

    def _set_pending(self, snapshot: Pending) -> None:
        self.pending = snapshot
        self.changed.set()

    def _resolve(self, future: asyncio.Future[Any], value: Any) -> None:
        self._resolve_all([(future, value)])

    def _resolve_all(self, outcomes: list[tuple[asyncio.Future[Any], Any]]) -> None:
        def settle() -> None:
            for future, value in outcomes:
                if future.done():
                    continue
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)

        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            self._loop.call_soon_threadsafe(settle)


def marks_path(path: Path) -> Path:
    """The marks file of the buffer at `path`."""
    return Path(path).with_name(Path(path).name + ".marks")


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite says the file is damaged or not a database (not: full, locked, I/O, permissions)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


def _check_file(path: Path) -> str | None:
    """Why the database at `path` is damaged (its `quick_check` or the error opening it), or None if it is sound.

    Only damage counts: a locked, unreadable or full file raises BufferError, since moving it aside would not help.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise BufferError(f"cannot open the buffer {path}: {exc}") from None
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        if _is_corrupt(exc):
            return f"{exc}"
        raise BufferError(f"cannot check the buffer {path}: {exc}") from None
    finally:
        conn.close()
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return "quick_check: " + "; ".join(problems[:3]) + more
    return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _stats(conn: sqlite3.Connection, max_size: int) -> BufferStats:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    row = conn.execute("SELECT taken_ms FROM records ORDER BY seq LIMIT 1").fetchone()
    held = 0
    quarantined: list[dict[str, Any]] = []
    parked = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    newest = conn.execute("SELECT reason, rejected_ms FROM rejected ORDER BY seq DESC LIMIT 1").fetchone()
    with contextlib.suppress(sqlite3.OperationalError):  # a version-1 file opened read-only has no pending table
        held = conn.execute("SELECT count(*) FROM pending").fetchone()[0]
        found = conn.execute("SELECT value FROM state WHERE key = ?", (QUARANTINE_KEY,)).fetchone()
        if found:
            quarantined = list(json.loads(found[0]).get("files", []))
    return BufferStats(
        depth=meta["depth"],
        bytes=meta["bytes"],
        max_size=max_size,
        oldest_taken_ms=row[0] if row else 0,
        next_seq=meta["next_seq"],
        acked_seq=meta["acked_seq"],
        last_ack_ms=meta["last_ack_ms"],
        dropped_records=meta["dropped_records"],
        gap_events=meta["gap_events"],
        rejected=meta["rejected"],
        held=held,
        rejected_parked=parked,
        rejected_reason=newest[0] if newest else "",
        rejected_at_ms=newest[1] if newest else 0,
        restamped=meta.get("restamped", 0),
        suspect=meta.get("suspect", 0),
        wall_high_ms=meta.get("wall_high_ms", 0),
        quarantined=quarantined,
    )


def rejected_by_source(path: Path) -> dict[str, int]:
    """How many parked records each sensor or terminal (a source's name) has, from the file opened read-only."""
    if not Path(path).exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts: dict[str, int] = {}
        for (body,) in conn.execute("SELECT body FROM rejected"):
            record = unpack_parked(body)
            name = record.terminal if isinstance(record, Transaction) else record.sensor
            counts[name] = counts.get(name, 0) + 1
        return counts
    finally:
        conn.close()


def read_stats(path: Path, max_size: int = 0) -> BufferStats | None:
    """Stats from a buffer file opened read-only (for `footfall agent status`); None if there is none."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            return None  # the agent is creating the file right now: nothing to report yet
        return _stats(conn, max_size)
    finally:
        conn.close()
