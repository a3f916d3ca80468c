"""Record types: what a store produces, as it travels from agent to collector.

Times are integer milliseconds since the Unix epoch in UTC; money is an integer
amount of the currency's minor unit (cents), never a float. Every record carries
the agent's `seq`, assigned by the agent's buffer: strictly increasing per agent
and never reused. Records are plain frozen dataclasses; `to_wire`/`from_wire`
convert them to and from the msgpack maps of the v1 envelope (see SPEC.md).

Every bound a record must keep (SPEC.md section 2) is here, and both sides check it with
`validate`: the agent when a device's reading comes in (so the device hears 400 at once, not
a reading parked on the gateway as refused days later), the collector when a batch arrives.
The checks are written as `*_problem` functions that return what is wrong (or None), so the
agent's decoder and the collector word their refusals from the same rule.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from .errors import MalformedBatch

TransactionKind = Literal["sale", "refund", "void"]
EventKind = Literal[
    "online", "offline", "counter_reset", "counter_wrap", "error", "gap", "clock", "config"
]
ClockQuality = Literal["ok", "restamped", "suspect"]

TRANSACTION_KINDS: frozenset[str] = frozenset({"sale", "refund", "void"})
EVENT_KINDS: frozenset[str] = frozenset(
    {"online", "offline", "counter_reset", "counter_wrap", "error", "gap", "clock", "config"}
)
CLOCK_QUALITIES: frozenset[str] = frozenset({"ok", "restamped", "suspect"})

# Record times: a time outside [EARLIEST_MS, LATEST_MS) is a broken clock, not data (and would
# make the collector a partition for its month). Old backlogs are fine.
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z, excluded
# A time later than the reader's own clock by more than this is a broken clock too. A day is
# wider than any time zone mistake (a device set to local time but saying UTC, at most 14 h),
# so such a reading still arrives and shows its error, but no reading from 2098 ever does.
MAX_FUTURE_MS = 86_400_000
# Far beyond any real store, so that the collector's rollup sums never overflow bigint.
MAX_COUNT = 10**9  # people in one period, in one zone, or items in one transaction
MAX_AMOUNT_MINOR = 10**12
# Identifiers end up in URLs, CSV and logs: keep them printable and bounded.
MAX_NAME_CHARS = 128
# Free texts: a long receipt is ~15,000 characters; an event's detail is one line for people.
MAX_RAW_CHARS = 32_768
MAX_DETAIL_CHARS = 4_096
# Texts carry no control characters but newline and tab (PostgreSQL refuses NUL in text, and a
# terminal or a CSV cell should not receive escape sequences), and no lone surrogates (not UTF-8).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CURRENCY = re.compile(r"[A-Z]{3}")
_INT64_MAX = 2**63 - 1
# What an error message quotes of a bad value (a 2 MB detail must not come back in the answer).
_SHOWN = 60


@dataclass(frozen=True, slots=True)
class Count:
    """People who crossed a counting line (or entered/left a zone) during [start_ms, end_ms)."""

    TYPE: ClassVar[str] = "count"
    sensor: str
    line: str
    start_ms: int
    end_ms: int
    entries: int
    exits: int
    seq: int = 0
    clock: ClockQuality = "ok"


@dataclass(frozen=True, slots=True)
class Occupancy:
    """How many people a sensor saw in a zone at one instant."""

    TYPE: ClassVar[str] = "occupancy"
    sensor: str
    zone: str
    at_ms: int
    value: int
    seq: int = 0
    clock: ClockQuality = "ok"


@dataclass(frozen=True, slots=True)
class Transaction:
    """One POS transaction. `amount_minor` is never negative: `kind` says whether it adds or takes away."""

    TYPE: ClassVar[str] = "transaction"
    terminal: str
    txn_id: str
    at_ms: int
    kind: TransactionKind
    amount_minor: int
    currency: str
    items: int = 0
    raw: str = ""
    seq: int = 0
    clock: ClockQuality = "ok"


@dataclass(frozen=True, slots=True)
class SensorEvent:
    """Something that happened to a sensor or to the agent itself.

    A `gap` event names the exact seq range the agent lost (`lost_first`..`lost_last`),
    so the loss is visible upstream instead of silent.
    """

    TYPE: ClassVar[str] = "event"
    sensor: str
    at_ms: int
    kind: EventKind
    detail: str = ""
    lost_first: int = 0
    lost_last: int = 0
    seq: int = 0
    clock: ClockQuality = "ok"


Record = Count | Occupancy | Transaction | SensorEvent
RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls for cls in (Count, Occupancy, Transaction, SensorEvent)
}
# Optional fields left at their default are not sent: smaller bodies, and old readers stay happy.
_OPTIONAL: dict[str, dict[str, Any]] = {
    name: {f.name: f.default for f in fields(cls) if f.default is not MISSING and f.name != "seq"}
    for name, cls in RECORD_TYPES.items()
}

# Per type: every field in declaration order (the order they are encoded in).
_FIELD_NAMES: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in fields(cls)) for name, cls in RECORD_TYPES.items()
}

# Per type: the fields that must be ints and those that must be strings (Literal fields are strings too).
_TYPED_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (
        tuple(f.name for f in fields(cls) if f.type == "int"),
        tuple(f.name for f in fields(cls) if f.type != "int"),
    )
    for name, cls in RECORD_TYPES.items()
}

# Per type: the keys its wire map may have.
_KEYS: dict[str, frozenset[str]] = {name: frozenset({"type", *names}) for name, names in _FIELD_NAMES.items()}

# Per type: the fields that are names (bounded identifiers) and those that are times.
_NAMES: dict[str, tuple[str, ...]] = {
    "count": ("sensor", "line"), "occupancy": ("sensor", "zone"), "transaction": ("terminal", "txn_id"),
    "event": ("sensor",),
}
_TIMES: dict[str, tuple[str, ...]] = {
    "count": ("start_ms", "end_ms"), "occupancy": ("at_ms",), "transaction": ("at_ms",), "event": ("at_ms",),
}


def to_wire(record: Record) -> dict[str, Any]:
    """The record as a msgpack-ready map: `type` first, then fields; defaulted optional fields left out."""
    out: dict[str, Any] = {"type": record.TYPE}
    optional = _OPTIONAL[record.TYPE]
    # Fields are scalars: read them directly (dataclasses.asdict deep-copies, at several times the cost).
    for key in _FIELD_NAMES[record.TYPE]:
        value = getattr(record, key)
        if key in optional and optional[key] == value:
            continue
        out[key] = value
    return out


def from_wire(obj: Any, *, now_ms: int | None = None) -> Record:
    """Build and validate a record from a decoded msgpack map; raises MalformedBatch naming the problem.

    `now_ms`, the reader's clock, also refuses a time more than MAX_FUTURE_MS ahead of it.
    """
    record = _build(obj)
    validate(record, now_ms=now_ms)
    return record


def from_storage(obj: Any) -> Record:
    """A record the agent stored itself: its fields and their types are checked, not the bounds.

    The agent's buffer holds records taken under rules that may since have grown, and readings
    timed by a clock not yet trusted (held, then re-stamped): reading them back must not fail.
    Whatever leaves for the collector meets `validate` there.
    """
    record = _build(obj)
    _check_types(record)
    return record


def _build(obj: Any) -> Record:
    if not isinstance(obj, dict):
        raise MalformedBatch(f"a record must be a map, got {type(obj).__name__}")
    kind = obj.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedBatch(f"unknown record type {_show(kind)}; expected one of {sorted(RECORD_TYPES)}")
    unknown = obj.keys() - _KEYS[cls.TYPE]
    if unknown:
        raise MalformedBatch(f"{kind} record has unknown fields {sorted(_show(k) for k in unknown)}")
    args = dict(obj)
    del args["type"]
    try:
        return cls(**args)
    except TypeError as exc:
        raise MalformedBatch(f"{kind} record is missing fields: {exc}") from None


def validate(record: Record, *, now_ms: int | None = None, check_times: bool = True) -> None:
    """Check every field's type and bound (SPEC.md section 2); raises MalformedBatch naming the first bad field.

    `now_ms` (the reader's clock) also refuses times more than MAX_FUTURE_MS ahead of it;
    `check_times=False` leaves the times out (a reading timed by the agent's own clock, which
    the agent holds and re-stamps while that clock is not trusted).
    """
    _check_types(record)
    if record.seq < 1:
        raise MalformedBatch(f"{record.TYPE}.seq must be >= 1, got {record.seq}")
    if record.clock not in CLOCK_QUALITIES:
        raise MalformedBatch(f"{record.TYPE}.clock must be one of {sorted(CLOCK_QUALITIES)}, got {_show(record.clock)}")
    for name in _NAMES[record.TYPE]:
        _refuse(record, name, name_problem(getattr(record, name)))
    if check_times:
        for name in _TIMES[record.TYPE]:
            _refuse(record, name, time_problem(getattr(record, name), now_ms))
    if isinstance(record, Count):
        _refuse(record, "entries", count_problem(record.entries))
        _refuse(record, "exits", count_problem(record.exits))
        if record.end_ms <= record.start_ms:
            raise MalformedBatch("count.end_ms must be after count.start_ms")
    elif isinstance(record, Occupancy):
        _refuse(record, "value", count_problem(record.value))
    elif isinstance(record, Transaction):
        if record.kind not in TRANSACTION_KINDS:
            raise MalformedBatch(
                f"transaction.kind must be one of {sorted(TRANSACTION_KINDS)}, got {_show(record.kind)}"
            )
        if record.amount_minor < 0:
            raise MalformedBatch("transaction.amount_minor must not be negative; the kind says refund or void")
        if record.amount_minor > MAX_AMOUNT_MINOR:
            raise MalformedBatch(
                f"transaction.amount_minor must be at most {MAX_AMOUNT_MINOR} minor units, got {record.amount_minor}"
            )
        _refuse(record, "currency", currency_problem(record.currency))
        _refuse(record, "items", count_problem(record.items))
        _refuse(record, "raw", text_problem(record.raw, MAX_RAW_CHARS))
    else:
        if record.kind not in EVENT_KINDS:
            raise MalformedBatch(f"event.kind must be one of {sorted(EVENT_KINDS)}, got {_show(record.kind)}")
        if record.kind == "gap" and not (1 <= record.lost_first <= record.lost_last):
            raise MalformedBatch("a gap event needs 1 <= lost_first <= lost_last")
        _refuse(record, "detail", text_problem(record.detail, MAX_DETAIL_CHARS))


def name_problem(value: str) -> str | None:
    """What is wrong with a name (sensor, line, zone, terminal, txn_id), or None."""
    if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
        return f"must be 1-{MAX_NAME_CHARS} printable characters"
    return None


def text_problem(value: str, limit: int) -> str | None:
    """What is wrong with a free text (`raw`, `detail`) of at most `limit` characters, or None."""
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    bad = _CONTROL.search(value)
    if bad is not None:
        return (
            f"contains U+{ord(bad.group()):04X} at character {bad.start()}: "
            "texts carry no control characters other than newline and tab"
        )
    return None


def currency_problem(value: str) -> str | None:
    """What is wrong with a currency code, or None."""
    return None if _CURRENCY.fullmatch(value) else "must be an ISO 4217 code like EUR"


def count_problem(value: int) -> str | None:
    """What is wrong with a number of people or items, or None."""
    if value < 0:
        return "must not be negative"
    if value > MAX_COUNT:
        return f"must be at most {MAX_COUNT}"
    return None


def time_problem(ms: int, now_ms: int | None = None) -> str | None:
    """What is wrong with a record time (Unix ms), or None; `now_ms` also bounds it by the reader's clock."""
    if not EARLIEST_MS <= ms < LATEST_MS:
        return f"{ms} ({show_time(ms)}) is outside 2000-01-01 to 2100-01-01 UTC: the device or agent clock is wrong"
    if now_ms is not None and ms > now_ms + MAX_FUTURE_MS:
        return (
            f"{ms} ({show_time(ms)}) is {(ms - now_ms) / 3_600_000:.0f} h ahead of the receiver's clock "
            f"({show_time(now_ms)}); the limit is {MAX_FUTURE_MS // 3_600_000} h: the device or agent clock is wrong"
        )
    return None


def show_time(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC, for messages (the bare number when no calendar date holds it)."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def record_time_ms(record: Record) -> int:
    """The time a record is filed under: a count's period start, otherwise its instant."""
    return record.start_ms if isinstance(record, Count) else record.at_ms


def _check_types(record: Record) -> None:
    int_fields, str_fields = _TYPED_FIELDS[record.TYPE]
    for name in int_fields:
        value = getattr(record, name)
        if type(value) is not int or not -_INT64_MAX <= value <= _INT64_MAX:
            raise MalformedBatch(f"{record.TYPE}.{name} must be a 64-bit integer, got {_show(value)}")
    for name in str_fields:
        value = getattr(record, name)
        if not isinstance(value, str):
            raise MalformedBatch(f"{record.TYPE}.{name} must be a string, got {_show(value)}")


def _refuse(record: Record, name: str, problem: str | None) -> None:
    if problem is None:
        return
    # A rule ("must ...") is shown with the value it refused; a finding already describes it.
    shown = f", got {_show(getattr(record, name))}" if problem.startswith("must") else ""
    raise MalformedBatch(f"{record.TYPE}.{name} {problem}{shown}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
