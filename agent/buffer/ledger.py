"""The ledger: the buffer's running numbers, and the bookkeeping rules that keep them true.

The numbers live in the `meta` table, one row each, and commit with the records they describe
(a group commit writes the ones that changed). `bytes` and `depth` are kept, not summed: the
size bound (guarantee 6) is checked at every commit, and counting a large backlog each time
would cost more than the commit. So every change to `records` goes through one of the methods
below, each of which moves every number the change touches:

- `appended`: a record took `next_seq`; the next one moves on, and bytes and depth grow.
- `acked`, `parked`, `dropped`: records left (acknowledged, refused, or dropped over the bound);
  bytes and depth shrink by what they took, and the mark or counter of that way out moves.
- `renumbered`: every record was taken out to be appended again above the collector's mark.
- `carried_over`: a fresh buffer after a damaged one starts above everything the old one used.

What a row costs on disk is its packed body plus `ROW_OVERHEAD`, so that a buffer of tiny
records is still bounded in bytes on disk, not only in payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

# What a row costs beyond its packed body (key, time, kind, b-tree cell).
ROW_OVERHEAD = 48
# The counters a fresh buffer carries over from a damaged one (they only ever grow).
CARRIED_COUNTERS = ("dropped_records", "gap_events", "rejected", "restamped", "suspect")


def row_cost(body_bytes: int, rows: int = 1) -> int:
    """What `rows` rows whose packed bodies total `body_bytes` count against the bound."""
    return body_bytes + ROW_OVERHEAD * rows


@dataclass(slots=True)
class Ledger:
    """The `meta` table as numbers: seq marks, what is buffered, and the counters `status` shows."""

    next_seq: int = 1  # the seq the next record gets; only grows (guarantee 2)
    acked_seq: int = 0  # the collector acknowledged every seq up to here
    bytes: int = 0  # what the buffered records count against the bound (`row_cost`)
    depth: int = 0  # how many records are buffered
    last_ack_ms: int = 0
    dropped_records: int = 0  # dropped over the bound, ever
    gap_events: int = 0  # gap events written, ever
    rejected: int = 0  # refused by the collector and parked, ever
    wall_high_ms: int = 0  # the latest trusted wall-clock time of a commit (agent/clock.py)
    restamped: int = 0  # held records re-stamped exactly, ever
    suspect: int = 0  # held records sent flagged suspect, ever

    @classmethod
    def from_meta(cls, meta: Mapping[str, int]) -> Ledger:
        """The ledger as the `meta` table holds it; a key the table lacks keeps its default."""
        return cls(**{name: meta[name] for name in KEYS if name in meta})

    def as_meta(self) -> dict[str, int]:
        """Key -> value, as the `meta` table holds them."""
        return asdict(self)

    def copy(self) -> Ledger:
        """An independent copy (what a rolled-back write returns to)."""
        return replace(self)

    def changed_since(self, before: Ledger) -> dict[str, int]:
        """The numbers that differ from `before`: what a commit writes."""
        old = before.as_meta()
        return {key: value for key, value in self.as_meta().items() if old[key] != value}

    def over(self, max_size: int) -> bool:
        """Whether the buffered records count more than the bound."""
        return self.bytes > max_size

    def appended(self, body_bytes: int) -> None:
        """A record whose packed body is `body_bytes` long was stored under `next_seq`."""
        self.next_seq += 1
        self.bytes += row_cost(body_bytes)
        self.depth += 1

    def acked(self, acked_seq: int, rows: int, body_bytes: int, now_ms: int) -> None:
        """The collector acknowledged every seq up to `acked_seq`; `rows` records were deleted for it."""
        self._removed(rows, body_bytes)
        self.acked_seq = max(self.acked_seq, acked_seq)
        self.last_ack_ms = now_ms

    def parked(self, body_bytes: int) -> None:
        """One record the collector refused moved out of the upload queue into `rejected`."""
        self._removed(1, body_bytes)
        self.rejected += 1

    def dropped(self, rows: int, body_bytes: int) -> None:
        """The oldest `rows` records were dropped to get back under the bound (their gap event follows)."""
        self._removed(rows, body_bytes)
        self.dropped_records += rows

    def gap_recorded(self) -> None:
        """A gap event (a lost seq range) was written."""
        self.gap_events += 1

    def renumbered(self, high_water: int) -> None:
        """Every record was taken out, to be appended again above the collector's `high_water` mark."""
        self.next_seq = max(self.next_seq, high_water + 1)
        self.bytes = 0
        self.depth = 0

    def restamped_held(self, restamped: int, suspect: int) -> None:
        """Held records were released: `restamped` with exact times, `suspect` flagged."""
        self.restamped += restamped
        self.suspect += suspect

    def trusted_commit(self, now_ms: int) -> None:
        """A commit happened at `now_ms` on a trusted clock."""
        self.wall_high_ms = max(self.wall_high_ms, now_ms)

    def resume_after(self, acked_seq: int) -> None:
        """Never hand out a seq at or below one the marks say was acknowledged (a file restored from a copy)."""
        self.next_seq = max(self.next_seq, acked_seq + 1)

    def carried_over(self, old: Mapping[str, int], *, next_seq: int, acked_seq: int, wall_high_ms: int) -> None:
        """A fresh buffer replacing a damaged one: start at `next_seq`, keep the old counters (`old`, may be empty)."""
        self.next_seq = next_seq
        self.acked_seq = acked_seq
        for key in CARRIED_COUNTERS:
            setattr(self, key, max(getattr(self, key), old.get(key, 0)))
        self.wall_high_ms = max(self.wall_high_ms, wall_high_ms, old.get("wall_high_ms", 0))

    def _removed(self, rows: int, body_bytes: int) -> None:
        self.bytes -= row_cost(body_bytes, rows)
        self.depth -= rows


KEYS = tuple(f.name for f in fields(Ledger))
