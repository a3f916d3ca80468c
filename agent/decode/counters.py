"""Counter arithmetic: readings become records, with state, inside the buffer's transaction.

The rules (design.md, "Counter semantics"):
- An interval count passes through, unless its period (sensor, line, start) was already
  taken: a device re-sending a period it is unsure we got must not count twice. The first
  taken wins; a resend with different numbers is still a resend.
- A transaction passes through unless (terminal, kind, id) was already taken: POS webhooks
  retry until they see a 2xx. The kind is part of the key because a POS may void or refund
  under the sale's own id.
- Those keys are remembered for the profile's `[dedupe] window` (and the buffer caps their
  number), so the table stays bounded; a resend older than the window would count again.
- A cumulative counter's first reading is a baseline and makes no record. Each later one
  becomes a `Count` over [previous reading, this reading) with the difference. A value below
  the previous one is a wrap when the profile has a modulus and the drop is more than half of
  it (the delta adds the modulus, and a `counter_wrap` event says so); otherwise a reset (the
  device rebooted or was cleared): the new value is what it counted since, and a
  `counter_reset` event says so. A delta is never negative. A reading not newer than the
  last one is a resend and is dropped: its people are still counted, by the next newer
  reading's delta from the same baseline. When the device numbers its reports (Irisys
  LogEntryId), a reading with a newer number but an older time is no resend but the device's
  clock stepping back: a `clock` event says so, and its people likewise come with the next one.
- A daily cumulative counter (Hikvision realTime, the old Axis live sum) counts from zero
  every local midnight: a reading of a new day is a delta from zero over [midnight, reading),
  expected and silent; a drop within a day is a reset as above. Its very first reading is no
  baseline either: its totals are the day's since midnight as well, so they become a count over
  [midnight, reading). Nobody knows when in that span those people came: the period says so,
  and the collector files a long period with people as spread over it (collector/rollups.py).
  Unless a damaged buffer was replaced since that midnight: the counter's state may be what was
  lost, its morning already sent, and the first reading is a baseline as for other counters.
- Where a delta is filed (`[profile] delta_at`): `start`, the default, files the people of
  [previous, this) under the period, which the collector files at its start: right for totals
  polled or logged on a schedule, whose people crossed anywhere in it. `end` is for devices
  that push when their count changes (Hikvision realTime, a Terabee count frame per crossing):
  the people crossed just before the push that reports them, and the spell before was quiet.
  So the period becomes two counts: zero people over [previous, this - 1 ms), which tells the
  collector the sensor was watching the whole quiet spell, and the delta over the last
  millisecond before the push. Filed at the earlier push instead, a visitor after a quiet spell
  would move back by the whole spell, often into the previous hour.
- With `[dedupe] by = "end"` (Xovis, whose pushes overlap), an interval is a resend unless it
  ends after the latest one taken for its line; the latest end is state like a counter's.
- With `[dedupe] event_id`, a frame whose event id was already taken is a resend whole.
- With `[dedupe] void_needs_sale`, a void counts only if its sale was taken: a POS that voids
  a parked sale never sold anything, and subtracting it would undercount.
- When the agent's clock times the readings (polled totals, `[time] source = "agent"`), the
  period is measured on the monotonic clock, so a wall-clock step (NTP's first sync, a
  `date -s`) never makes a negative, empty or overlapping-by-repetition period: its length is
  the monotonic time between the two readings, it ends at this reading's time, and it starts
  exactly where the previous one ended unless the wall clock stepped in between. Newer means
  later on the monotonic clock. Across a reboot of the gateway the monotonic clock restarts:
  the period then runs from the previous reading's time, and is flagged `suspect` unless
  both readings had a trusted clock (agent/clock.py).

All state goes through `CounterState`, which the buffer's `Txn` implements: what is read and
written here commits or rolls back with the records it produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from footfall.agent.buffer import QUARANTINE_KEY
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.protocol.records import ClockQuality, Count, Occupancy, Record, SensorEvent, Transaction

_SEP = "\x1f"


class CounterState(Protocol):
    """The transaction's view that counter arithmetic needs (implemented by buffer.Txn)."""

    now_ms: int

    def append(self, record: Record) -> int:
        """Store a record; returns its seq."""
        ...

    def first_seen(self, scope: str, key: str, keep_ms: int) -> bool:
        """Remember a dedupe key; False if it was already taken."""
        ...

    def seen(self, scope: str, key: str) -> bool:
        """Whether a dedupe key was taken (without taking it)."""
        ...

    def get_state(self, key: str) -> dict[str, Any] | None:
        """Saved state, or None."""
        ...

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """Save state."""
        ...


@dataclass(frozen=True, slots=True)
class CounterPolicy:
    """The profile settings the arithmetic needs."""

    keep_ms: int = 7 * 86_400_000
    modulus: int = 0
    by: str = "start"
    void_needs_sale: bool = False
    delta_at: str = "start"


@dataclass(slots=True)
class TakeResult:
    """What one frame's readings came to."""

    readings: int = 0
    records: int = 0
    duplicates: int = 0
    baselines: int = 0
    events: int = 0
    # Items left out: by the profile's [where] (counted by the intake) or a void of a sale never taken.
    ignored: int = 0

    @property
    def accepted(self) -> int:
        """Readings taken: neither resends nor ignored."""
        return self.readings - self.duplicates - self.ignored

    def add(self, other: TakeResult) -> None:
        """Sum another result into this one."""
        self.readings += other.readings
        self.records += other.records
        self.duplicates += other.duplicates
        self.baselines += other.baselines
        self.events += other.events
        self.ignored += other.ignored


def take(
    state: CounterState, readings: Sequence[Reading], policy: CounterPolicy, *, event: str = ""
) -> TakeResult:
    """Turn readings into records in the open transaction; returns the tally.

    `event` is the frame's event key (source and event id) when the profile dedupes events.
    """
    result = TakeResult(readings=len(readings))
    if event and not state.first_seen("event", event, policy.keep_ms):
        result.duplicates = len(readings)
        return result
    for reading in readings:
        if isinstance(reading, CumulativeCount):
            _cumulative(state, reading, policy, result)
            continue
        if _void_of_no_sale(state, reading, policy):
            result.ignored += 1
            continue
        if _is_resend(state, reading, policy):
            result.duplicates += 1
            continue
        state.append(reading)
        result.records += 1
    return result


def _void_of_no_sale(state: CounterState, reading: Reading, policy: CounterPolicy) -> bool:
    """A void whose sale was never taken, under `void_needs_sale`."""
    if not (policy.void_needs_sale and isinstance(reading, Transaction) and reading.kind == "void"):
        return False
    return not state.seen(f"txn{_SEP}{reading.terminal}", f"sale{_SEP}{reading.txn_id}")


def _is_resend(state: CounterState, reading: Count | Occupancy | Transaction, policy: CounterPolicy) -> bool:
    if isinstance(reading, Count) and policy.by == "end":
        mark = f"period-end{_SEP}{reading.sensor}{_SEP}{reading.line}"
        saved = state.get_state(mark)
        if saved is not None and reading.end_ms <= saved["end_ms"]:
            return True
        state.put_state(mark, {"end_ms": reading.end_ms})
        return False
    scope, key = dedupe_key(reading)
    return not state.first_seen(scope, key, policy.keep_ms)


def dedupe_key(reading: Count | Occupancy | Transaction) -> tuple[str, str]:
    """The (scope, key) under which a reading is remembered to drop its resends."""
    if isinstance(reading, Count):
        return f"period{_SEP}{reading.sensor}{_SEP}{reading.line}", str(reading.start_ms)
    if isinstance(reading, Occupancy):
        return f"occupancy{_SEP}{reading.sensor}{_SEP}{reading.zone}", str(reading.at_ms)
    return f"txn{_SEP}{reading.terminal}", f"{reading.kind}{_SEP}{reading.txn_id}"


def cumulative_key(sensor: str, line: str) -> str:
    """The state key of a cumulative counter's last reading."""
    return f"cumulative{_SEP}{sensor}{_SEP}{line}"


@dataclass(frozen=True, slots=True)
class Step:
    """One channel's move from its previous total to the current one."""

    delta: int
    what: str  # "ok", "wrap" or "reset"


def advance(previous: int, current: int, modulus: int) -> Step:
    """The increase from `previous` to `current` for a counter that wraps at `modulus` (0: never)."""
    if current >= previous:
        return Step(current - previous, "ok")
    if modulus and previous - current > modulus // 2:
        return Step(current + modulus - previous, "wrap")
    return Step(current, "reset")


# `delta_at = "end"`: the people of a push are filed over its last millisecond (the finest time a record has).
_PUSH_SLICE_MS = 1
# Wall and monotonic readings are whole milliseconds: consecutive periods may disagree by a
# rounding step. Below this the period starts exactly where the previous one ended (clock.STEP_MS).
_CONTIGUOUS_MS = 1000


def _cumulative(state: CounterState, reading: CumulativeCount, policy: CounterPolicy, result: TakeResult) -> None:
    key = cumulative_key(reading.sensor, reading.line)
    saved = state.get_state(key)
    state_now: dict[str, Any] = {"at_ms": reading.at_ms, "entries": reading.entries, "exits": reading.exits}
    if reading.report is not None:
        state_now["report"] = reading.report
    if reading.day:
        state_now["day"] = reading.day
    if reading.boot:
        state_now.update(mono_ms=reading.mono_ms, boot=reading.boot, trusted=reading.trusted)
    if saved is None:
        state.put_state(key, state_now)
        if reading.day and reading.day_start_ms < reading.at_ms and not _state_lost_since(state, reading.day_start_ms):
            # Since local midnight, like any later day's first reading: counted, spread over the morning.
            state.append(
                Count(reading.sensor, reading.line, reading.day_start_ms, reading.at_ms, reading.entries, reading.exits)
            )
            result.records += 1
            return
        result.baselines += 1
        return
    period = _period(saved, reading)
    if period is None:
        last_report = saved.get("report")
        if reading.report is not None and last_report is not None and reading.report > last_report:
            # A newer report with an older time: the device's clock stepped back. Keep the baseline, so
            # these people are counted by the next reading whose time is newer.
            state.put_state(key, {**saved, "report": reading.report})
            detail = f"line {reading.line}: report {reading.report} is dated before report {last_report}"
            state.append(SensorEvent(reading.sensor, reading.at_ms, "clock", detail + "; counted with the next one"))
            result.events += 1
            return
        result.duplicates += 1
        return
    start, clock = period
    if reading.day and saved.get("day") and reading.day != saved["day"]:
        # A new local day: the device restarted from zero at midnight, as it does every day.
        steps = {ch: Step(getattr(reading, ch), "ok") for ch in ("entries", "exits")}
        if reading.day_start_ms < reading.at_ms and policy.delta_at == "start":
            # Polled: whoever came before midnight after the last reading is in yesterday's totals, unseen.
            start = max(start, reading.day_start_ms)
    else:
        steps = {ch: advance(saved[ch], getattr(reading, ch), policy.modulus) for ch in ("entries", "exits")}
    for what, kind in (("reset", "counter_reset"), ("wrap", "counter_wrap")):
        moved = [f"{ch} {saved[ch]} -> {getattr(reading, ch)}" for ch, step in steps.items() if step.what == what]
        if moved:
            detail = f"line {reading.line}: " + ", ".join(moved)
            if what == "wrap":
                detail += f" (wrapped at {policy.modulus})"
            state.append(SensorEvent(reading.sensor, reading.at_ms, kind, detail))  # type: ignore[arg-type]
            result.events += 1
    entries, exits = steps["entries"].delta, steps["exits"].delta
    end = reading.at_ms
    if policy.delta_at == "end" and (entries or exits) and end - start > _PUSH_SLICE_MS:
        # The quiet spell, then the people at the push that reported them.
        state.append(Count(reading.sensor, reading.line, start, end - _PUSH_SLICE_MS, 0, 0, clock=clock))
        result.records += 1
        start = end - _PUSH_SLICE_MS
    state.append(Count(reading.sensor, reading.line, start, end, entries, exits, clock=clock))
    result.records += 1
    state.put_state(key, state_now)


def _state_lost_since(state: CounterState, since_ms: int) -> bool:
    """Whether a damaged or deleted buffer was replaced at or after `since_ms` (buffer.py, guarantee 7).

    A counter with no state then may simply have lost it: the people since midnight may already
    have gone up from the old buffer, so its first reading is a baseline, as before, rather than
    a chance to count them twice.
    """
    quarantine = state.get_state(QUARANTINE_KEY) or {}
    return any(
        isinstance(entry, dict) and int(entry.get("at_ms", 0)) >= since_ms for entry in quarantine.get("files", [])
    )


def _period(saved: dict[str, Any], reading: CumulativeCount) -> tuple[int, ClockQuality] | None:
    """(start of the period ending at `reading`, its clock quality), or None when the reading is not newer."""
    if not reading.boot:
        return (saved["at_ms"], "ok") if reading.at_ms > saved["at_ms"] else None
    if saved.get("boot") == reading.boot:
        elapsed = reading.mono_ms - saved["mono_ms"]
        if elapsed <= 0:
            return None
        start = reading.at_ms - elapsed
        if abs(start - saved["at_ms"]) < _CONTIGUOUS_MS:
            start = saved["at_ms"]
        return start, "ok"
    # The gateway rebooted between the two readings: no common monotonic clock.
    both_trusted = bool(saved.get("trusted", True)) and reading.trusted
    start = saved["at_ms"] if saved["at_ms"] < reading.at_ms else reading.at_ms - 1
    return start, "ok" if both_trusted and saved["at_ms"] < reading.at_ms else "suspect"
