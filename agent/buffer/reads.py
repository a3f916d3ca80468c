"""What the buffer answers without writing: the reads the writer thread serves between commits,
and the views of a buffer file opened read-only (`footfall agent status`, `doctor`).

The writer thread runs every read on its own connection between two commits, so a read sees
committed data only (guarantee 4): the uploader can never be offered a record that is not
durable. The read-only views open the file with `mode=ro` and work on a file another process
is writing, or on a version-1 file that has not been upgraded yet.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from footfall.agent.buffer.schema import QUARANTINE_KEY, read_ledger
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import RECORD_TYPES, Record, Transaction


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


def batch(conn: sqlite3.Connection, max_records: int, max_bytes: int) -> list[StoredRecord]:
    """The oldest records, at most `max_records` and `max_bytes` (but at least one)."""
    out: list[StoredRecord] = []
    size = 0
    for seq, body in conn.execute("SELECT seq, body FROM records ORDER BY seq LIMIT ?", (max_records,)):
        if out and size + len(body) > max_bytes:
            break
        out.append(StoredRecord(seq, body))
        size += len(body)
    return out


def count_between(conn: sqlite3.Connection, first: int, last: int) -> int:
    """How many records with seqs `first`..`last` are buffered."""
    (present,) = conn.execute("SELECT count(*) FROM records WHERE seq BETWEEN ? AND ?", (first, last)).fetchone()
    return int(present)


def oldest_taken_ms(conn: sqlite3.Connection) -> int:
    """When the oldest buffered record was taken (0 when none is)."""
    row = conn.execute("SELECT taken_ms FROM records ORDER BY seq LIMIT 1").fetchone()
    return int(row[0]) if row else 0


def state(conn: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """A state entry as committed, or None."""
    row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def pragmas(conn: sqlite3.Connection) -> dict[str, str]:
    """The connection's journal mode and synchronous level (guarantee 1)."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    return {"journal_mode": str(journal), "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]}


def records(conn: sqlite3.Connection) -> list[Record]:
    """Every buffered record, oldest first."""
    return [unpack_record(body) for (body,) in conn.execute("SELECT body FROM records ORDER BY seq")]


def held(conn: sqlite3.Connection) -> list[tuple[str, int, Record]]:
    """Every record held for a trusted clock, as (boot id, offset ms, record), oldest first."""
    rows = conn.execute("SELECT boot, offset_ms, body FROM pending ORDER BY id").fetchall()
    return [(boot, offset, unpack_record(body)) for boot, offset, body in rows]


def rejected(conn: sqlite3.Connection) -> list[tuple[int, str, Record]]:
    """Every parked record with the reason it was refused, oldest first."""
    rows = conn.execute("SELECT seq, reason, body FROM rejected ORDER BY seq").fetchall()
    return [(seq, reason, unpack_parked(body)) for seq, reason, body in rows]


def unpack_parked(body: bytes) -> Record:
    """A stored record as it was packed, without today's validation.

    What an older agent parked may break a rule added since (a NUL in a receipt's text): it must
    still be readable, to be shown, counted and repaired (requeue.py validates after).
    """
    wire = msgpack.unpackb(body, raw=False)
    return RECORD_TYPES[wire.pop("type")](**wire)


def stats(conn: sqlite3.Connection, max_size: int) -> BufferStats:
    """The buffer's numbers as committed."""
    ledger = read_ledger(conn)
    held_count = 0
    quarantined: list[dict[str, Any]] = []
    parked = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
    newest = conn.execute("SELECT reason, rejected_ms FROM rejected ORDER BY seq DESC LIMIT 1").fetchone()
    with contextlib.suppress(sqlite3.OperationalError):  # a version-1 file opened read-only has no pending table
        held_count = conn.execute("SELECT count(*) FROM pending").fetchone()[0]
        found = conn.execute("SELECT value FROM state WHERE key = ?", (QUARANTINE_KEY,)).fetchone()
        if found:
            quarantined = list(json.loads(found[0]).get("files", []))
    return BufferStats(
        depth=ledger.depth,
        bytes=ledger.bytes,
        max_size=max_size,
        oldest_taken_ms=oldest_taken_ms(conn),
        next_seq=ledger.next_seq,
        acked_seq=ledger.acked_seq,
        last_ack_ms=ledger.last_ack_ms,
        dropped_records=ledger.dropped_records,
        gap_events=ledger.gap_events,
        rejected=ledger.rejected,
        held=held_count,
        rejected_parked=parked,
        rejected_reason=newest[0] if newest else "",
        rejected_at_ms=newest[1] if newest else 0,
        restamped=ledger.restamped,
        suspect=ledger.suspect,
        wall_high_ms=ledger.wall_high_ms,
        quarantined=quarantined,
    )


def read_stats(path: Path, max_size: int = 0) -> BufferStats | None:
    """Stats from a buffer file opened read-only (for `footfall agent status`); None if there is none."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            return None  # the agent is creating the file right now: nothing to report yet
        return stats(conn, max_size)
    finally:
        conn.close()


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
