"""Readings held for a trusted clock, and where in time they go once it is (guarantee 8).

A reading the agent times itself (`[time] source = "agent"`) while its clock is not trusted
(agent/clock.py) is not uploaded: it waits in `pending` with its stamp, the boot id and the
wall-minus-monotonic offset of the moment it was taken (`Txn.hold`). When the clock becomes
trusted, `Txn.restamp` takes them all out and `place` says where each one goes:

- same boot as the trust: the monotonic clock ran on without a break, so every time moves by
  (trusted offset - the record's offset), exactly; the record's clock becomes "restamped".
  Offsets within a step of each other are one stretch of the same clock (they differ by
  millisecond rounding), so a stretch moves by one shift and periods that joined still join.
- an earlier boot: its monotonic clock started at an unknown moment between the last trusted
  commit (`wall_high_ms`) and this boot's start. Each such boot is placed as early as it can
  have been (right after the last trusted commit, or after the boot placed before it) and kept
  before this boot began; its records are flagged "suspect".

Everything here is arithmetic on records; the transaction does the reading and writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from footfall.agent.clock import STEP_MS, Stamp, Trust
from footfall.protocol.records import ClockQuality, Count, Record, SensorEvent


@dataclass(frozen=True, slots=True)
class Held:
    """One held record with the stamp it was taken at."""

    boot: str
    offset_ms: int
    taken_ms: int
    record: Record


@dataclass(frozen=True, slots=True)
class RestampResult:
    """What one `Buffer.restamp` did."""

    restamped: int = 0
    suspect: int = 0
    boots: int = 0
    shift_ms: int = 0


@dataclass(slots=True)
class Placement:
    """The held records with their times corrected or flagged, in the order they are to be appended."""

    records: list[tuple[Record, int]] = field(default_factory=list)  # (record, taken_ms)
    restamped: int = 0
    suspect: int = 0
    boots: int = 0
    shift_ms: int = 0
    # Held records other than the agent's own clock events: whether there is anything to report.
    readings: int = 0

    @property
    def result(self) -> RestampResult:
        """What the restamp did, for its caller."""
        return RestampResult(self.restamped, self.suspect, self.boots, self.shift_ms)

    def detail(self, source: str) -> str:
        """The text of the clock event that reports this placement."""
        text = f"clock trusted ({source}): re-stamped {self.restamped} held records by {self.shift_ms / 1000:+.3f} s"
        if self.boots:
            text += f"; {self.suspect} records of {self.boots} earlier boot(s) never had a trusted clock: suspect"
        return text


def place(held: list[Held], trust: Trust, stamp: Stamp, wall_high_ms: int) -> Placement:
    """Where each held record goes now that the clock is trusted (`trust`, as of `stamp`); see the module docstring."""
    out = Placement()
    now_offset = stamp.offset_ms if stamp.trusted else trust.offset_ms
    boot_start = stamp.wall_ms - stamp.mono_ms if stamp.trusted else 0
    others: dict[str, list[Held]] = {}
    stretch: int | None = None
    for item in held:
        record = item.record
        out.readings += not (isinstance(record, SensorEvent) and record.kind == "clock")
        if item.boot == trust.boot_id:
            if stretch is None or abs(item.offset_ms - stretch) > STEP_MS:
                stretch = item.offset_ms
            out.shift_ms = clock_shift(stretch, now_offset)
            out.records.append((shift_times(record, out.shift_ms, "restamped"), item.taken_ms))
            out.restamped += 1
        else:
            others.setdefault(item.boot, []).append(item)
    cursor = wall_high_ms
    for boot in others.values():
        last_mono = max(_latest_ms(item.record) - item.offset_ms for item in boot)
        latest_start = boot_start - last_mono if boot_start else cursor
        start = min(cursor, latest_start) if cursor else latest_start
        for item in boot:
            out.records.append((shift_times(item.record, start - item.offset_ms, "suspect"), item.taken_ms))
            out.suspect += 1
        cursor = start + last_mono + 1
    out.boots = len(others)
    return out


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
