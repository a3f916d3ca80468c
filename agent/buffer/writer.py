"""The writer thread: the one owner of the writing connection, and the group commit (guarantees 1 and 4).

Why a dedicated thread: sqlite3 blocks, and the group-commit window needs one owner that
collects writes, opens one transaction, applies them in order and fsyncs once. A thread
owning the only writing connection does that with a blocking queue and no polling; the event
loop only enqueues and awaits futures. Reads go through the same thread (they are small and
indexed) and see committed data only, because writes are applied at commit time, never left
open between commits.

A commit: every write queued in the window (and, when the window is over, every write already
waiting), each in a SAVEPOINT so one failing write fails alone; then the overflow drop if the
bound is passed and no batch is out (overflow.py), the dedupe keys' pruning once a minute, the
ledger's changed numbers, the seq reservation if the seqs reach it (marks.py), and COMMIT.
An ack commits at once, alone, with `synchronous=NORMAL`: a power cut that undoes one only makes
a re-send the collector drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from footfall.agent.buffer.errors import BufferError
from footfall.agent.buffer.ledger import Ledger
from footfall.agent.buffer.marks import Marks
from footfall.agent.buffer.overflow import drop_oldest
from footfall.agent.buffer.reads import Pending, oldest_taken_ms
from footfall.agent.buffer.recovery import Quarantine, is_corrupt, open_checked
from footfall.agent.buffer.schema import write_ledger
from footfall.agent.buffer.txn import Txn
from footfall.agent.clock import Stamp

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")

T = TypeVar("T")
PRUNE_EVERY_S = 60.0


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Any], T]
    future: asyncio.Future[T]
    write: bool
    durable: bool = True


_STOP = object()
# Queued by `release`: drop down to the bound now if overflow waited for the batch in flight.
_TRIM = object()


class Writer:
    """The writer thread of one buffer: `start`, then `submit` writes (functions of a `Txn`) and reads."""

    def __init__(
        self,
        path: Path,
        *,
        max_size: int,
        commit_interval: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        stamps: Callable[[], Stamp] | None,
        on_pending: Callable[[Pending], None],
        on_corrupt: Callable[[str], None],
    ) -> None:
        self.path = path
        self.max_size = max_size
        self.commit_interval = commit_interval
        self._clock = clock
        self._monotonic = monotonic
        self._stamps = stamps
        # Both run on the event loop: a new snapshot of what is pending, and a file found damaged.
        self._on_pending = on_pending
        self._on_corrupt = on_corrupt
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._marks: Marks | None = None
        self._ledger = Ledger()
        self._closed = False
        # Commits so far (group commits, not writes): written by the writer thread only.
        self.commits = 0
        # The damaged file moved aside by this open, if any.
        self.quarantined: Quarantine | None = None
        # The seq range of the batch being sent (guarantee 6): set in the writer thread by `claim`,
        # cleared by `release`; overflow drops wait while it is set.
        self.in_flight: tuple[int, int] | None = None

    async def start(self, marks: Marks) -> None:
        """Open the database in a new thread (recovery.py) and return once it serves, or raise why it cannot."""
        self._loop = asyncio.get_running_loop()
        self._marks = marks
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

    async def stop(self) -> None:
        """Commit what is queued, stop the thread and close the database."""
        if self._thread is None:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def submit(self, fn: Callable[[Any], T], *, write: bool, durable: bool = True) -> T:
        """Queue a write (`fn(txn)`) or a read (`fn(conn)`) and return its result once served."""
        if self._thread is None or self._loop is None or self._closed:
            raise BufferError(f"the buffer {self.path} is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(fn, future, write, durable))
        # A caller that gives up (a device hanging up) cancels only this future: the job stays queued
        # and commits with its group (the writer thread skips resolving a future that is done).
        return await future

    def release(self) -> None:
        """No batch is out any more: overflow may drop again, at once if it was held back."""
        self.in_flight = None
        if self._thread is not None and not self._closed:
            # Writes that came while the batch was out could not drop the oldest; without this the
            # buffer would stay over its bound until the next write, hours away in a quiet store.
            self._queue.put(_TRIM)

    # --- in the thread ---------------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        assert self._marks is not None
        try:
            conn, self._ledger, self.quarantined = open_checked(self.path, self._marks, self._clock, self._stamps)
        except (sqlite3.Error, OSError, BufferError) as exc:
            self._marks.close()
            error = exc if isinstance(exc, BufferError) else BufferError(f"cannot open the buffer {self.path}: {exc}")
            self._resolve_all([(ready, error)])
            return
        self._resolve_all([(ready, None)])
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
            self._drain_after_stop()
        finally:
            conn.close()
            self._marks.note(acked=self._ledger.acked_seq, wall_high_ms=self._ledger.wall_high_ms)
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

    def _drain_after_stop(self) -> None:
        leftovers: list[_Job[Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Job):
                leftovers.append(item)
        closing = "the buffer is closing; nothing was written"
        self._resolve_all([(job.future, BufferError(closing)) for job in leftovers])

    def _read(self, conn: sqlite3.Connection, job: _Job[Any]) -> None:
        try:
            result = job.fn(conn)
        except (sqlite3.Error, ValueError, TypeError) as exc:
            if isinstance(exc, sqlite3.Error) and is_corrupt(exc):
                self._corrupt(str(exc))
            self._resolve_all([(job.future, BufferError(f"reading the buffer failed: {exc}"))])
        else:
            self._resolve_all([(job.future, result)])

    def _commit(self, conn: sqlite3.Connection, group: list[_Job[Any]], prune: bool) -> bool:
        assert self._marks is not None
        now_ms = int(self._clock() * 1000)
        stamp = self._stamps() if self._stamps is not None else None
        before = self._ledger
        txn = Txn(conn, before.copy(), now_ms, stamp)
        outcomes: list[Any] = []
        durable = any(job.durable for job in group)
        try:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                saved = txn.ledger.copy()
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
                    txn.ledger = saved
                    outcomes.append(exc)
                else:
                    conn.execute("RELEASE job")
                    outcomes.append(result)
            if txn.ledger.over(self.max_size) and self.in_flight is None:
                drop_oldest(txn, self.max_size)
            if prune and txn.trusted:
                txn.prune_seen()
            if txn.trusted:
                txn.ledger.trusted_commit(now_ms)
            write_ledger(conn, txn.ledger, since=before)
            if txn.ledger.next_seq > self._marks.values.reserved:
                # Before the commit: the marks must be above every seq that is ever committed.
                self._marks.ensure_reserved(txn.ledger.next_seq)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            event(log, "buffer_commit_failed", logging.ERROR, path=str(self.path), writes=len(group), error=str(exc))
            if isinstance(exc, sqlite3.Error) and is_corrupt(exc):
                self._corrupt(str(exc))
            failure = BufferError(f"could not commit to {self.path}: {exc}")
            self._resolve_all([(job.future, failure) for job in group])
            return False
        finally:
            if not durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=FULL")
        self._ledger = txn.ledger
        self.commits += 1
        self._marks.note(acked=self._ledger.acked_seq, wall_high_ms=self._ledger.wall_high_ms)
        self._publish(conn)
        # One wake-up of the event loop for the whole group, not one per write.
        self._resolve_all([(job.future, outcome) for job, outcome in zip(group, outcomes, strict=True)])
        return True

    def _trim(self, conn: sqlite3.Connection) -> None:
        """Commit just the overflow drop, if the buffer is over its bound and no batch is out.

        Without an fsync of its own: a power cut that undoes it brings back the records and takes
        their gap event with them, in the same transaction; the next durable commit carries it.
        """
        if self._ledger.over(self.max_size) and self.in_flight is None:
            self._commit(conn, [], prune=False)

    def _corrupt(self, reason: str) -> None:
        event(log, "buffer_corrupt", logging.CRITICAL, path=str(self.path), error=reason,
              hint="the agent stops; its restart moves the file aside and starts a fresh buffer")
        self._call_soon(self._on_corrupt, reason)

    def _publish(self, conn: sqlite3.Connection) -> None:
        snapshot = Pending(self._ledger.depth, self._ledger.bytes, oldest_taken_ms(conn))
        self._call_soon(self._on_pending, snapshot)

    def _resolve_all(self, outcomes: list[tuple[asyncio.Future[Any], Any]]) -> None:
        def settle() -> None:
            for future, value in outcomes:
                if future.done():
                    continue
                if isinstance(value, BaseException):
                    future.set_exception(value)
                else:
                    future.set_result(value)

        self._call_soon(settle)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            self._loop.call_soon_threadsafe(fn, *args)
