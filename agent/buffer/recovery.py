"""Opening a buffer that may be damaged (guarantee 7): check, move aside, seed a fresh one, never a crash loop.

At open the file gets `PRAGMA quick_check`. A damaged file (and its -wal/-shm) is moved aside as
`buffer.sqlite.corrupt-<UTC time>` and read page by page (pages.py) for what it still holds. The
fresh buffer is then seeded in one transaction:

- its numbering starts above every seq ever given: the reservation in the marks (marks.py), the
  damaged file's own `next_seq` and highest record, whichever is largest;
- a `gap` event names the seqs that were buffered but not acknowledged: from the damaged
  file's own marks when they can be read, else up to the reservation (it may over-report,
  never under-report);
- counter state, dedupe keys and held readings are carried over, so the next cumulative
  reading is not a new baseline and a device's resend is still recognised; the records
  themselves come back only with `footfall agent buffer salvage` (salvage.py);
- the move is noted under `agent.quarantine` (`status` shows it; salvage reads it).

A missing file whose marks say seqs were given (someone deleted it) is seeded the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from footfall.agent.buffer.errors import BufferError
from footfall.agent.buffer.ledger import Ledger
from footfall.agent.buffer.marks import Marks
from footfall.agent.buffer.pages import Found, scan
from footfall.agent.buffer.schema import QUARANTINE_KEY, connect, write_ledger
from footfall.agent.buffer.txn import Txn
from footfall.agent.clock import Stamp
from footfall.agent.private_file import fsync_dir
from footfall.protocol.records import SensorEvent

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")


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


def open_checked(
    path: Path, marks: Marks, clock: Callable[[], float], stamps: Callable[[], Stamp] | None
) -> tuple[sqlite3.Connection, Ledger, Quarantine | None]:
    """Open the database at `path`; a damaged one is moved aside first and a fresh one seeded."""
    existed = path.exists()
    problem = check_file(path) if existed else None
    found: Found | None = None
    moved = ""
    if problem is not None:
        moved = move_aside(path, clock())
        event(log, "buffer_corrupt", logging.ERROR, path=str(path), problem=problem, moved_to=moved)
        found = scan(path.with_name(moved))
    conn, ledger = connect(path)
    # A buffer restored from an older copy must still not reuse what the marks say was acked.
    ledger.resume_after(marks.values.acked)
    quarantined: Quarantine | None = None
    lost_file = not existed and marks.existed and marks.values.reserved > 1
    if problem is not None or lost_file:
        now_ms = int(clock() * 1000)
        txn = Txn(conn, ledger.copy(), now_ms, stamps() if stamps is not None else None)
        try:
            quarantined = _seed(txn, conn, marks, problem or "the buffer file was missing", moved, found)
        except BaseException:
            conn.close()
            raise
        ledger = txn.ledger
    if marks.ensure_reserved(ledger.next_seq):
        event(log, "seq_reserved", level=logging.DEBUG, below=marks.values.reserved)
    return conn, ledger, quarantined


def is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite says the file is damaged or not a database (not: full, locked, I/O, permissions)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"


def check_file(path: Path) -> str | None:
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
        if is_corrupt(exc):
            return f"{exc}"
        raise BufferError(f"cannot check the buffer {path}: {exc}") from None
    finally:
        conn.close()
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return "quick_check: " + "; ".join(problems[:3]) + more
    return None


def move_aside(path: Path, now: float) -> str:
    """Rename the damaged file and its -wal/-shm to `<name>.corrupt-<UTC time>[-n]`; returns the new name."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.corrupt-{stamp}"
    name = base
    n = 1
    while path.with_name(name).exists():
        name = f"{base}-{n}"
        n += 1
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, path.with_name(name + suffix))
    os.replace(path, path.with_name(name))
    fsync_dir(path.parent)
    return name


def _seed(
    txn: Txn, conn: sqlite3.Connection, marks: Marks, reason: str, moved: str, found: Found | None
) -> Quarantine:
    """Start the fresh buffer above every seq used before, record the loss, carry state over; commits."""
    meta = found.meta if found is not None else {}
    acked = max(marks.values.acked, meta.get("acked_seq", 0))
    known_next = max(meta.get("next_seq", 0), (found.max_seq + 1) if found is not None else 0)
    next_seq = max(marks.values.reserved, known_next, acked + 1, txn.ledger.next_seq)
    # The file's own next_seq is exact when it could be read; otherwise everything up to the reservation.
    lost_last = known_next - 1 if "next_seq" in meta else next_seq - 1
    conn.execute("BEGIN IMMEDIATE")
    try:
        txn.ledger.carried_over(meta, next_seq=next_seq, acked_seq=acked, wall_high_ms=marks.values.wall_high_ms)
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
                carried_keys += txn.carry_seen(scope, key, expires)
            for boot, offset, taken_ms, body in found.pending.values():
                txn.hold_packed(boot, offset, taken_ms, body)
                carried_held += 1
        info = Quarantine(
            file=moved,
            at_ms=txn.now_ms,
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
                    at_ms=txn.now_ms,
                    kind="gap",
                    detail=f"buffer lost ({reason}); {where}".rstrip("; "),
                    lost_first=acked + 1,
                    lost_last=lost_last,
                )
            )
        history = list(previous.get("files", [])) if isinstance(previous, dict) else []
        txn.put_state(QUARANTINE_KEY, {"files": [*history, info.as_dict()]})
        write_ledger(conn, txn.ledger)
        marks.ensure_reserved(next_seq)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    marks.note(acked=acked, force=True)
    event(log, "buffer_quarantined", logging.ERROR, moved_to=moved or "-", reason=reason,
          lost_first=acked + 1, lost_last=lost_last, next_seq=next_seq, carried_state=info.carried_state,
          carried_keys=carried_keys, carried_held=carried_held)
    return info
