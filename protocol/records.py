"""Record types: what a store produces, as it travels from agent to collector.

Times are integer milliseconds since the Unix epoch in UTC; money is an integer
amount of the currency's minor unit (cents), never a float. Every record carries
the agent's `seq`, assigned by the agent's buffer: strictly increasing per agent
and never reused. Records are plain frozen dataclasses; `to_wire`/`from_wire`
convert them to and from the msgpack maps of the v1 envelope (see SPEC.md).
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
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
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Identifiers end up in URLs, CSV and logs: keep them printable and bounded.
_NAME_MAX = 128
_INT64_MAX = 2**63 - 1


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


def from_wire(obj: Any) -> Record:
    """Build and validate a record from a decoded msgpack map; raises MalformedBatch naming the problem."""
    if not isinstance(obj, dict):
        raise MalformedBatch(f"a record must be a map, got {type(obj).__name__}")
    kind = obj.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedBatch(f"unknown record type {kind!r}; expected one of {sorted(RECORD_TYPES)}")
    names = {f.name for f in fields(cls)}
    unknown = set(obj) - names - {"type"}
    if unknown:
        raise MalformedBatch(f"{kind} record has unknown fields {sorted(unknown)}")
    args = {k: v for k, v in obj.items() if k != "type"}
    try:
        record = cls(**args)
    except TypeError as exc:
        raise MalformedBatch(f"{kind} record is missing fields: {exc}") from None
    validate(record)
    return record


def validate(record: Record) -> None:
    """Check every field's type and range; raises MalformedBatch naming the first bad field."""
    int_fields, str_fields = _TYPED_FIELDS[record.TYPE]
    for name in int_fields:
        value = getattr(record, name)
        if type(value) is not int or not -_INT64_MAX <= value <= _INT64_MAX:
            raise MalformedBatch(f"{record.TYPE}.{name} must be a 64-bit integer, got {value!r}")
    for name in str_fields:
        value = getattr(record, name)
        if not isinstance(value, str):
            raise MalformedBatch(f"{record.TYPE}.{name} must be a string, got {value!r}")
    _check_name(record, "sensor" if not isinstance(record, Transaction) else "terminal")
    if record.seq < 1:
        raise MalformedBatch(f"{record.TYPE}.seq must be >= 1, got {record.seq}")
    if record.clock not in CLOCK_QUALITIES:
        raise MalformedBatch(f"{record.TYPE}.clock must be one of {sorted(CLOCK_QUALITIES)}, got {record.clock!r}")
    if isinstance(record, Count):
        _check_name(record, "line")
        if record.entries < 0 or record.exits < 0:
            raise MalformedBatch("count.entries and count.exits must not be negative")
        if record.end_ms <= record.start_ms:
            raise MalformedBatch("count.end_ms must be after count.start_ms")
    elif isinstance(record, Occupancy):
        _check_name(record, "zone")
        if record.value < 0:
            raise MalformedBatch("occupancy.value must not be negative")
    elif isinstance(record, Transaction):
        _check_name(record, "txn_id")
        if record.kind not in TRANSACTION_KINDS:
            raise MalformedBatch(f"transaction.kind must be one of {sorted(TRANSACTION_KINDS)}, got {record.kind!r}")
        if record.amount_minor < 0:
            raise MalformedBatch("transaction.amount_minor must not be negative; the kind says refund or void")
        if not _CURRENCY.match(record.currency):
            raise MalformedBatch(f"transaction.currency must be an ISO 4217 code like EUR, got {record.currency!r}")
        if record.items < 0:
            raise MalformedBatch("transaction.items must not be negative")
    else:
        if record.kind not in EVENT_KINDS:
            raise MalformedBatch(f"event.kind must be one of {sorted(EVENT_KINDS)}, got {record.kind!r}")
        if record.kind == "gap" and not (1 <= record.lost_first <= record.lost_last):
            raise MalformedBatch("a gap event needs 1 <= lost_first <= lost_last")


def _check_name(record: Record, name: str) -> None:
    value = getattr(record, name)
    if not value or len(value) > _NAME_MAX or not value.isprintable():
        raise MalformedBatch(
            f"{record.TYPE}.{name} must be 1-{_NAME_MAX} printable characters, got {value!r}"
        )
