"""The transaction a write runs in (guarantee 3), and every change the buffer makes to its tables.

A write is a function of a `Txn`, run by the writer thread inside a group commit
(writer.py): the records it appends, the counter state and dedupe keys it reads and updates
and the ledger's numbers (ledger.py) commit or roll back together. Callers outside the buffer
(decode, intake) use the first group of methods; the buffer's own writes (ack, refusals,
renumbering, restamping, overflow, recovery, salvage, requeue) use the second, so that every
statement touching `records`, `pending`, `rejected` and `seen` is here, next to the ledger
rule it must keep.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from footfall.agent.buffer.held import Held, RestampResult, clock_shift, place, shift_times
from footfall.agent.buffer.ledger import Ledger
from footfall.agent.clock import Stamp, Trust
from footfall.protocol.envelope import pack_record, unpack_record
from footfall.protocol.records import Record, SensorEvent

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")

# Dedupe keys are bounded in time by their expiry and in number by this cap (oldest expiry first).
SEEN_KEYS_MAX = 500_000
# Dedupe keys taken while the clock is untrusted expire this far above their window, until
# `restamp` knows the true time and rebases them (an expiry computed from 1970 would be gone at once).
PENDING_EXPIRY = 1 << 60


class Txn:
    """The open transaction a write function runs in: append records, read and update derived state.

    `stamp` is the agent clock at this commit (None: no agent clock, the wall clock is trusted).
    """

    def __init__(self, conn: sqlite3.Connection, ledger: Ledger, now_ms: int, stamp: Stamp | None = None) -> None:
        self._conn = conn
        self.ledger = ledger
        self.now_ms = now_ms
        self.stamp = stamp

    @property
    def trusted(self) -> bool:
        """Whether the wall clock can be believed at this commit."""
        return self.stamp is None or self.stamp.trusted

    # --- what a write function does -----------------------------------------------------------

    def append(self, record: Record, *, taken_ms: int | None = None) -> int:
        """Give `record` the next seq and store it; returns the seq."""
        seq = self.ledger.next_seq
        body = pack_record(record, seq=seq)
        kind = "gap" if isinstance(record, SensorEvent) and record.kind == "gap" else record.TYPE
        self._conn.execute(
            "INSERT INTO records (seq, taken_ms, kind, body) VALUES (?, ?, ?, ?)",
            (seq, self.now_ms if taken_ms is None else taken_ms, kind, body),
        )
        self.ledger.appended(len(body))
        return seq

    def stamped(self, stamp: Stamp) -> StampedTxn:
        """A view for records whose times come from the agent's clock at `stamp`."""
        return StampedTxn(self, stamp)

    def hold(self, record: Record, stamp: Stamp, *, taken_ms: int | None = None) -> None:
        """Keep an agent-timed record aside (no seq yet) until the clock is trusted; see `restamp`."""
        self.hold_packed(
            stamp.boot_id, stamp.offset_ms, self.now_ms if taken_ms is None else taken_ms,
            pack_record(replace(record, seq=1)),
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
        self.ledger.gap_recorded()
        return self.append(record if self.trusted else replace(record, clock="suspect"))

    def first_seen(self, scope: str, key: str, keep_ms: int) -> bool:
        """Record a dedupe key for `keep_ms`; True if it was new, False if already taken (a resend)."""
        base = self.now_ms if self.trusted else PENDING_EXPIRY
        return self.carry_seen(scope, key, base + keep_ms)

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

    # --- the buffer's own writes ----------------------------------------------------------------

    def ack(self, acked_seq: int) -> int:
        """Delete every record with seq <= `acked_seq` (the collector has it); returns how many (guarantee 5)."""
        rows, body_bytes = self._delete_through(acked_seq)
        self.ledger.acked(acked_seq, rows, body_bytes, self.now_ms)
        return rows

    def park(self, seq: int, reason: str) -> bool:
        """Move the record `seq` the collector refused into `rejected`, with the reason; False if it is gone."""
        row = self._conn.execute("DELETE FROM records WHERE seq = ? RETURNING taken_ms, body", (seq,)).fetchone()
        if row is None:
            return False
        self._conn.execute(
            "INSERT OR REPLACE INTO rejected (seq, taken_ms, rejected_ms, reason, body) VALUES (?, ?, ?, ?, ?)",
            (seq, row[0], self.now_ms, reason, row[1]),
        )
        self.ledger.parked(len(row[1]))
        return True

    def parked(self) -> list[tuple[int, int, bytes]]:
        """Every parked record as (seq, taken_ms, packed body), oldest first."""
        return self._conn.execute("SELECT seq, taken_ms, body FROM rejected ORDER BY seq").fetchall()

    def keep_parked(self, seq: int, reason: str) -> None:
        """Leave a parked record where it is, with a new reason."""
        self._conn.execute("UPDATE rejected SET reason = ? WHERE seq = ?", (reason, seq))

    def unpark(self, seq: int) -> None:
        """Forget a parked record (it is appended again, or was a copy of one that is)."""
        self._conn.execute("DELETE FROM rejected WHERE seq = ?", (seq,))

    def renumber(self, high_water: int) -> int:
        """Give every buffered record a fresh seq above `high_water`, in order; returns how many (`Buffer.rebase`)."""
        rows = self._conn.execute("SELECT taken_ms, body FROM records ORDER BY seq").fetchall()
        self._conn.execute("DELETE FROM records")
        self.ledger.renumbered(high_water)
        for taken_ms, body in rows:
            self.append(unpack_record(body), taken_ms=taken_ms)
        return len(rows)

    def restamp(self, trust: Trust, stamp: Stamp) -> RestampResult:
        """Move every held record into `records`, placed in time by held.py, and trust the dedupe keys' expiries."""
        rows = self._conn.execute("SELECT boot, offset_ms, taken_ms, body FROM pending ORDER BY id").fetchall()
        held = [Held(boot, offset, taken_ms, unpack_record(body)) for boot, offset, taken_ms, body in rows]
        placed = place(held, trust, stamp, self.ledger.wall_high_ms)
        for record, taken_ms in placed.records:
            self.append(record, taken_ms=taken_ms)
        self._conn.execute("DELETE FROM pending")
        self._conn.execute(
            "UPDATE seen SET expires_ms = expires_ms - ? + ? WHERE expires_ms >= ?",
            (PENDING_EXPIRY, self.now_ms, PENDING_EXPIRY),
        )
        self.ledger.restamped_held(placed.restamped, placed.suspect)
        if placed.readings:
            self.append(SensorEvent("agent", self.now_ms, "clock", placed.detail(trust.source)))
            event(log, "records_restamped", restamped=placed.restamped, suspect=placed.suspect, boots=placed.boots,
                  shift_ms=placed.shift_ms, source=trust.source)
        return placed.result

    def oldest(self) -> Iterator[tuple[int, int, bytes | None]]:
        """(seq, packed length, the body if it is a gap event) of every record, oldest first (overflow.py)."""
        return self._conn.execute(
            "SELECT seq, length(body), CASE WHEN kind = 'gap' THEN body END FROM records ORDER BY seq"
        )

    def drop_through(self, last_seq: int) -> int:
        """Drop every record up to `last_seq` over the bound (its gap event is the caller's); returns how many."""
        rows, body_bytes = self._delete_through(last_seq)
        self.ledger.dropped(rows, body_bytes)
        return rows

    def hold_packed(self, boot: str, offset_ms: int, taken_ms: int, body: bytes) -> None:
        """Keep a packed record aside for a trusted clock, as stamped (`hold`; carried over from a damaged file)."""
        self._conn.execute(
            "INSERT INTO pending (boot, offset_ms, taken_ms, body) VALUES (?, ?, ?, ?)",
            (boot, offset_ms, taken_ms, body),
        )

    def carry_seen(self, scope: str, key: str, expires_ms: int) -> bool:
        """Take a dedupe key until `expires_ms`; False if it was taken already."""
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO seen (scope, key, expires_ms) VALUES (?, ?, ?)", (scope, key, expires_ms)
        )
        return cur.rowcount == 1

    def prune_seen(self) -> None:
        """Forget the dedupe keys expired by now, then the ones closest to expiry over `SEEN_KEYS_MAX`."""
        self._conn.execute("DELETE FROM seen WHERE expires_ms < ?", (self.now_ms,))
        (count,) = self._conn.execute("SELECT COUNT(*) FROM seen").fetchone()
        if count > SEEN_KEYS_MAX:
            self._conn.execute(
                "DELETE FROM seen WHERE (scope, key) IN (SELECT scope, key FROM seen ORDER BY expires_ms LIMIT ?)",
                (count - SEEN_KEYS_MAX,),
            )

    def _delete_through(self, seq: int) -> tuple[int, int]:
        """Delete every record up to `seq`: (rows, their packed bytes)."""
        lengths = self._conn.execute("DELETE FROM records WHERE seq <= ? RETURNING length(body)", (seq,)).fetchall()
        return len(lengths), sum(length for (length,) in lengths)


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
            self.txn.ledger.restamped_held(1, 0)
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
