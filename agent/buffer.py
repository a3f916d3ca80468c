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
   commits at most once per `commit_interval`, with every write that arrived meanwhile
   (and, when the window is over, every write already waiting in the queue: with a window
   of 0 a burst of writers still shares one fsync), each in a SAVEPOINT so one failing
   write fails alone.
5. Delete only after ack. Records leave the buffer when the collector's 2xx acknowledges
   them (`ack`), or, loudly, into the `rejected` table when the collector refused one as
   malformed (kept for inspection, never silently deleted), or through guarantee 6.
6. Bounded. The stored bytes (packed size plus a per-row overhead) are kept in `meta`, not
   summed. Past `max_size` the oldest records are dropped down to 90 % of it and a `gap`
   event (sensor "agent") records the exact lost seq range, so the loss is visible upstream.
   A dropped gap event's own range is carried into the new one. The ranges are exact: a
   batch is sent only if none of its records was dropped since it was read (`claim`), and
   while one is being sent (until its ack or failure, `release`) dropping waits, so a record
   that reaches the collector is never also reported lost. The bound may therefore be
   exceeded, for the length of one upload attempt (at most `[collector] timeout`), by what
   arrives meanwhile.

Why a dedicated thread: sqlite3 blocks, and the group-commit window needs one owner that
collects writes, opens one transaction, applies them in order and fsyncs once. A thread
owning the only writing connection does that with a blocking queue and no polling; the
event loop only enqueues and awaits futures. Reads go through the same thread (they are
small and indexed) and see committed data only, because writes are applied at commit time,
never left open between commits: the uploader can never send a record that is not durable.

On-disk layout (`PRAGMA user_version = 1`):
  records(seq PK, taken_ms, kind, body)       packed records, oldest first by seq
  rejected(seq PK, taken_ms, rejected_ms, reason, body)
  meta(key PK, value)                          next_seq, acked_seq, bytes, depth, counters
  state(key PK, value)                         counter state as JSON (decode/counters.py)
  seen(scope, key, expires_ms, PK(scope,key))  dedupe keys with their expiry
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from footfall.protocol.envelope import pack_record, unpack_record
from footfall.protocol.records import Record, SensorEvent

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")

T = TypeVar("T")
SCHEMA_VERSION = 1
# What a row costs beyond its packed body (key, time, kind, b-tree cell): counted so that a
# buffer of tiny records is still bounded in bytes on disk, not only in payload.
ROW_OVERHEAD = 48
# Dropping down to 90 % of the bound on overflow writes one gap event per tenth of the
# buffer, instead of one per commit while an uplink is down for days.
LOW_WATER = 0.9
# Dedupe keys are bounded in time by their expiry and in number by this cap (oldest expiry first).
SEEN_KEYS_MAX = 500_000
PRUNE_EVERY_S = 60.0
_META_DEFAULTS = {
    "next_seq": 1,
    "acked_seq": 0,
    "bytes": 0,
    "depth": 0,
    "last_ack_ms": 0,
    "dropped_records": 0,
    "gap_events": 0,
    "rejected": 0,
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
"""


class BufferError(Exception):
    """The buffer could not commit (disk full, I/O error, closed): nothing of the write was taken."""

    retryable = True


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

    def as_dict(self) -> dict[str, int]:
        """The stats as plain JSON-ready values."""
        return asdict(self)


class Txn:
    """The open transaction a write function runs in: append records, read and update derived state."""

    def __init__(self, conn: sqlite3.Connection, meta: dict[str, int], now_ms: int) -> None:
        self._conn = conn
        self.meta = meta
        self.now_ms = now_ms

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
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO seen (scope, key, expires_ms) VALUES (?, ?, ?)", (scope, key, self.now_ms + keep_ms)
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


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Any], T]
    future: asyncio.Future[T]
    write: bool


_STOP = object()


class Buffer:
    """The SQLite buffer. `await open()`, then `write`/`read_batch`/`ack`; `await close()` at the end."""

    def __init__(
        self,
        path: Path,
        *,
        max_size: int,
        commit_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.commit_interval = commit_interval
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meta: dict[str, int] = {}
        self.pending = Pending()
        # Set on every commit that changed what is pending; the uploader waits on it instead of polling.
        self.changed = asyncio.Event()
        # Commits so far (group commits, not writes): written by the writer thread only.
        self.commits = 0
        self._closed = False
        # The seq range of the batch being sent (guarantee 6): set in the writer thread by `claim`,
        # cleared by `release`; overflow drops wait while it is set.
        self._in_flight: tuple[int, int] | None = None

    async def open(self) -> None:
        """Create or open the database and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(
                f"cannot make the folder of the buffer {self.path}: {exc.strerror or exc}; check [agent] state_dir"
            ) from None
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

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` inside the next group commit and return its result once that commit is durable.

        If `fn` raises, only its own changes are rolled back and the exception comes back
        here; if the commit fails, BufferError says why and nothing of `fn` was taken.
        """
        return await self._submit(fn, write=True)

    async def append(self, records: list[Record]) -> list[int]:
        """Commit `records` and return their seqs."""
        return await self.write(lambda txn: [txn.append(r) for r in records])

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

        return await self.write(delete)

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
        """The claimed batch is acked, refused or failed: overflow may drop again (at the next commit)."""
        self._in_flight = None

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
            return [(seq, reason, unpack_record(body)) for seq, reason, body in rows]

        return await self._submit(read, write=False)

    async def records(self) -> list[Record]:
        """Every buffered record, oldest first (for tests, `status --records` and debugging)."""

        def read(conn: sqlite3.Connection) -> list[Record]:
            return [unpack_record(body) for (body,) in conn.execute("SELECT body FROM records ORDER BY seq")]

        return await self._submit(read, write=False)

    async def _submit(self, fn: Callable[[Any], T], *, write: bool) -> T:
        if self._thread is None or self._loop is None or self._closed:
            raise BufferError(f"the buffer {self.path} is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future, write))
        # A caller that gives up (a device hanging up) cancels only this future: the job stays queued
        # and commits with its group (the writer thread skips resolving a future that is done).
        return await future

    # --- the writer thread -------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            self._resolve(ready, BufferError(f"cannot open the buffer {self.path}: {exc}"))
            return
        self._resolve(ready, None)
        self._publish(conn)
        last_commit = 0.0
        last_prune = time.monotonic()
        group: list[_Job[Any]] = []
        stopping = False
        try:
            while not stopping:
                timeout = None
                if group:
                    timeout = max(0.0, last_commit + self.commit_interval - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout) if timeout != 0.0 else self._queue.get_nowait()
                except queue.Empty:
                    item = None
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Job):
                    if item.write:
                        group.append(item)
                    else:
                        self._read(conn, item)
                    if not group or time.monotonic() < last_commit + self.commit_interval:
                        continue
                if group:
                    # Everything already waiting joins this commit: one fsync for all of it.
                    stopping = self._take_waiting(conn, group) or stopping
                    last_commit = time.monotonic()
                    prune = last_commit - last_prune >= PRUNE_EVERY_S
                    self._commit(conn, group, prune)
                    if prune:
                        last_prune = last_commit
                    group = []
            self._drain_after_stop(conn)
        finally:
            conn.close()

    def _take_waiting(self, conn: sqlite3.Connection, group: list[_Job[Any]]) -> bool:
        """Move the writes already queued into `group` (serving reads on the way); True if a stop was queued."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
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

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            conn.close()
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this agent's ({SCHEMA_VERSION}); upgrade footfall"
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
        return conn

    def _read(self, conn: sqlite3.Connection, job: _Job[Any]) -> None:
        try:
            result = job.fn(conn)
        except (sqlite3.Error, ValueError, TypeError) as exc:
            self._resolve(job.future, BufferError(f"reading the buffer failed: {exc}"))
        else:
            self._resolve(job.future, result)

    def _commit(self, conn: sqlite3.Connection, group: list[_Job[Any]], prune: bool) -> None:
        now_ms = int(self._clock() * 1000)
        before = dict(self._meta)
        txn = Txn(conn, dict(self._meta), now_ms)
        outcomes: list[Any] = []
        try:
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
            if prune:
                self._prune_seen(conn, now_ms)
            for key, value in txn.meta.items():
                if before.get(key) != value:
                    conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._meta = before
            event(log, "buffer_commit_failed", logging.ERROR, path=str(self.path), writes=len(group), error=str(exc))
            failure = BufferError(f"could not commit to {self.path}: {exc}")
            for job in group:
                self._resolve(job.future, failure)
            return
        self._meta = txn.meta
        self.commits += 1
        self._publish(conn)
        # One wake-up of the event loop for the whole group, not one per write.
        self._resolve_all([(job.future, outcome) for job, outcome in zip(group, outcomes, strict=True)])

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
            txn.append(
                SensorEvent(
                    sensor="agent",
                    at_ms=txn.now_ms,
                    kind="gap",
                    detail=f"buffer over its {self.max_size}-byte bound: dropped the oldest records",
                    lost_first=lost_first,
                    lost_last=lost_last,
                )
            )
            txn.meta["gap_events"] += 1
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
    )


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
