"""Extraction: one frame's bytes become readings, as its profile says. Pure: no I/O, no state.

Two layers. A *format extractor* knows a wire format: it parses the bytes into items (one per
reading) and reads a value at a path inside an item. The *field rules* below know footfall's
readings: which fields a count, occupancy or transaction has, and how a value becomes one
(a time, a count, an amount in minor units, a transaction kind). So a new format (xml, csv,
line-regex, binary frames, Modbus register maps) is one extractor class added to
`default_extractors`, and every format gets the same field checks and error messages.

JSON paths are a small syntax of our own rather than jmespath: a path here only has to name
one value (`counts`, `data.items[0].count`, `["sensor-time"].time`, `$` for the whole body),
and it must tell "absent" from `null` so that a missing field gets an error naming it.
jmespath answers None for both, and would be one more dependency on every gateway.

A frame is all or nothing: any bad item rejects the whole frame with a DecodeError naming the
item and the field as the device wrote them (`counts[1].in: ...`), and nothing is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.protocol.errors import MalformedBatch
from footfall.protocol.records import TRANSACTION_KINDS, Count, Occupancy, Transaction, validate

if TYPE_CHECKING:
    from footfall.agent.decode.profile import Profile


class DecodeError(ValueError):
    """A frame that does not match its profile; the message names the item and the field."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
REQUIRED: Any = object()
SOURCE_NAME: Any = object()

# Each reading shape's fields: (kind, what to use when the profile does not declare the field).
READING_FIELDS: Mapping[str, Mapping[str, tuple[str, Any]]] = {
    "count/interval": {
        "line": ("name", "main"),
        "start": ("time", REQUIRED),
        "end": ("time", REQUIRED),
        "entries": ("count", REQUIRED),
        "exits": ("count", REQUIRED),
    },
    "count/cumulative": {
        "line": ("name", "main"),
        "at": ("time", REQUIRED),
        "entries": ("count", REQUIRED),
        "exits": ("count", REQUIRED),
    },
    "occupancy": {
        "zone": ("name", "main"),
        "at": ("time", REQUIRED),
        "value": ("count", REQUIRED),
    },
    "transaction": {
        "terminal": ("name", SOURCE_NAME),
        "txn_id": ("name", REQUIRED),
        "at": ("time", REQUIRED),
        "kind": ("kind", "sale"),
        "amount": ("amount", REQUIRED),
        "currency": ("currency", REQUIRED),
        "items": ("count", 0),
        "raw": ("text", ""),
    },
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME_MAX = 128
# A frame's errors are all reported, up to this many (a 500-item frame with one bad field per item stays readable).
_ERRORS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where one field of a reading comes from, and how its value is read."""

    name: str
    kind: str
    path: str
    compiled: Any
    mapping: Mapping[str, Any] | None = None
    decimals: int = 0
    modulus: int = 0
    value: Any = ABSENT
    default: Any = ABSENT

    def with_constant(self, which: str, value: Any) -> FieldSpec:
        """A copy with `value` (a constant) or `default` (used when the frame lacks the field) set."""
        return replace(self, **{which: value})


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What extraction needs beyond the profile: the source's name, its time zone, and the frame's receipt time.

    `received_ms` is the reading's time for profiles with `[time] source = "agent"` (devices without a clock).
    """

    source: str
    zone: ZoneInfo | None = None
    received_ms: int = 0


class Extractor(Protocol):
    """A wire format: bytes into items, and a value at a path inside an item."""

    name: str

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> Any:
        """The format's own profile section (e.g. `[json]`), problems reported through `add(key, message)`."""
        ...

    def compile_path(self, path: str) -> Any:
        """A field path in this format's syntax, checked once at load; ValueError says what is wrong."""
        ...

    def items(self, options: Any, payload: bytes) -> list[tuple[str, Any]]:
        """The frame's items as (where, item); DecodeError when the bytes are not this format."""
        ...

    def get(self, item: Any, path: Any) -> Any:
        """The value at a compiled path inside an item, or ABSENT."""
        ...


@dataclass(frozen=True, slots=True)
class JsonOptions:
    """`[json]` options."""

    items: tuple[tuple[str, tuple[str | int, ...]], ...]


class JsonExtractor:
    """JSON bodies. `[json] items` lists where the readings are; the first path present wins.

    A path that leads to an array yields one item per element; to an object, one item.
    `items = ["counts", "$"]` accepts both `{"counts": [{...}, {...}]}` and a bare `{...}`.
    """

    name = "json"
    _token = re.compile(r'\.?([A-Za-z0-9_\-@:]+)|\[(\d+)\]|\["([^"\]]*)"\]')

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> JsonOptions:
        """Read `[json]`: only `items` (default `["$"]`, the whole body)."""
        for key in table:
            if key != "items":
                add(f"{where}.{key}", "unknown key; allowed here: items")
        raw = table.get("items", ["$"])
        if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
            add(f"{where}.items", 'must be a non-empty list of paths such as ["counts", "$"]')
            return JsonOptions(())
        compiled: list[tuple[str, tuple[str | int, ...]]] = []
        for index, path in enumerate(raw):
            try:
                compiled.append((path, self.compile_path(path)))
            except ValueError as exc:
                add(f"{where}.items[{index}]", str(exc))
        return JsonOptions(tuple(compiled))

    def compile_path(self, path: str) -> tuple[str | int, ...]:
        """`a.b[0]["odd.key"]` -> ("a", "b", 0, "odd.key"); `$` is the whole item."""
        text = path[1:] if path.startswith("$") else path
        if not text and not path:
            raise ValueError('a path cannot be empty; write "$" for the whole body')
        steps: list[str | int] = []
        pos = 0
        while pos < len(text):
            match = self._token.match(text, pos)
            if match is None:
                raise ValueError(
                    f"cannot read path {path!r} at character {pos + len(path) - len(text)}: "
                    'use keys joined by dots, [0] for an array element, ["odd key"] for other keys'
                )
            key, index, quoted = match.groups()
            steps.append(int(index) if index is not None else key if key is not None else quoted)
            pos = match.end()
        return tuple(steps)

    def items(self, options: JsonOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Parse the body and find its items."""
        try:
            body = json.loads(payload.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise DecodeError(f"body is not UTF-8 text: {exc}") from None
        except json.JSONDecodeError as exc:
            raise DecodeError(f"body is not JSON: {exc}") from None
        for text, path in options.items:
            found = self.get(body, path)
            if found is ABSENT:
                continue
            where = "" if not path else text.lstrip("$.")
            items = [(f"{where}[{i}]", e) for i, e in enumerate(found)] if isinstance(found, list) else [(where, found)]
            for label, item in items:
                if not isinstance(item, dict):
                    raise DecodeError(f"{label or 'body'}: expected a JSON object, got {_show(item)}")
            return items
        raise DecodeError(f"none of {[t for t, _ in options.items]} is in the body")

    def get(self, item: Any, path: tuple[str | int, ...]) -> Any:
        """Follow the path; ABSENT as soon as a step is missing."""
        value = item
        for step in path:
            if isinstance(step, int) and isinstance(value, list):
                if step >= len(value):
                    return ABSENT
                value = value[step]
            elif isinstance(step, str) and isinstance(value, dict):
                if step not in value:
                    return ABSENT
                value = value[step]
            else:
                return ABSENT
        return value


def default_extractors() -> dict[str, Extractor]:
    """A fresh registry of the format extractors this agent knows (the pipeline owns its copy)."""
    return {"json": JsonExtractor()}


def extract(profile: Profile, extractor: Extractor, payload: bytes, ctx: DecodeContext) -> list[Reading]:
    """Every reading in one frame; DecodeError (nothing taken) naming every bad field when any item is wrong."""
    items = extractor.items(profile.options, payload)
    rules = READING_FIELDS[profile.shape]
    readings: list[Reading] = []
    errors: list[str] = []
    for where, item in items:
        values: dict[str, Any] = {}
        for name, (_, builtin) in rules.items():
            try:
                values[name] = _field_value(profile, extractor, name, builtin, item, where, ctx)
            except DecodeError as exc:
                errors.append(str(exc))
        if len(values) == len(rules):
            try:
                readings.append(_reading(profile, values, where, ctx))
            except DecodeError as exc:
                errors.append(str(exc))
    if errors:
        more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
        raise DecodeError("; ".join(errors[:_ERRORS_SHOWN]) + more)
    return readings


def _field_value(
    profile: Profile, extractor: Extractor, name: str, builtin: Any, item: Any, where: str, ctx: DecodeContext
) -> Any:
    spec = profile.fields.get(name)
    if name == "at" and profile.time.source == "agent":
        return ctx.received_ms
    if spec is None:
        return ctx.source if builtin is SOURCE_NAME else builtin
    if spec.value is not ABSENT:
        return spec.value
    raw = extractor.get(item, spec.compiled)
    label = ".".join(p for p in (where, spec.path) if p)
    if raw is ABSENT or raw is None:
        if spec.default is not ABSENT:
            return spec.default
        if builtin is SOURCE_NAME:
            return ctx.source
        raise DecodeError(f"{label}: " + ("null" if raw is None else "missing") + f", needed for the reading's {name}")
    try:
        return _convert(spec, raw, profile, ctx)
    except ValueError as exc:
        raise DecodeError(f"{label}: {exc}") from None


def _convert(spec: FieldSpec, raw: Any, profile: Profile | None, ctx: DecodeContext | None) -> Any:
    if spec.mapping is not None:
        key = str(raw).lower() if isinstance(raw, str) else json.dumps(raw)
        lowered = {k.lower(): v for k, v in spec.mapping.items()}
        if key not in lowered:
            raise ValueError(f"{raw!r} is not one of {sorted(spec.mapping)}")
        raw = lowered[key]
    if spec.kind == "time":
        if profile is None or ctx is None:
            raise ValueError("a time cannot be a constant")
        return _time(raw, profile, ctx)
    return FIELD_KINDS[spec.kind](spec, raw)


def convert_constant(spec: FieldSpec, value: Any) -> Any:
    """A profile's `value` or `default`, checked like a frame's value would be (ValueError if it cannot be)."""
    return _convert(spec, value, None, None)


def _name(_: FieldSpec, raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw or len(raw) > _NAME_MAX or not raw.isprintable():
        raise ValueError(f"must be 1-{_NAME_MAX} printable characters, got {_show(raw)}")
    return raw


def _text(_: FieldSpec, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {_show(raw)}")
    return raw


def _count(spec: FieldSpec, raw: Any) -> int:
    if type(raw) is not int or raw < 0:
        raise ValueError(f"must be a whole number >= 0, got {_show(raw)}")
    if spec.modulus and raw >= spec.modulus:
        raise ValueError(f"{raw} is not below the counter's modulus {spec.modulus}; check profile.modulus")
    return raw


def _amount(spec: FieldSpec, raw: Any) -> int:
    if spec.decimals == 0:
        if type(raw) is not int or raw < 0:
            raise ValueError(f"must be a whole number of minor units (cents) >= 0, got {_show(raw)}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"must be a decimal amount such as 12.50, got {_show(raw)}")
    try:
        minor = Decimal(str(raw)).scaleb(spec.decimals)
    except InvalidOperation:
        raise ValueError(f"must be a decimal amount such as 12.50, got {_show(raw)}") from None
    if minor != minor.to_integral_value() or minor < 0:
        raise ValueError(f"must be >= 0 with at most {spec.decimals} decimals, got {_show(raw)}")
    return int(minor)


def _kind(_: FieldSpec, raw: Any) -> str:
    if raw not in TRANSACTION_KINDS:
        raise ValueError(f"must be one of {', '.join(sorted(TRANSACTION_KINDS))}, got {_show(raw)}")
    return str(raw)


def _currency(_: FieldSpec, raw: Any) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise ValueError(f"must be an ISO 4217 code such as EUR, got {_show(raw)}")
    return raw.upper()


FIELD_KINDS: Mapping[str, Callable[[FieldSpec, Any], Any]] = {
    "name": _name,
    "text": _text,
    "count": _count,
    "amount": _amount,
    "kind": _kind,
    "currency": _currency,
    "time": lambda spec, raw: raw,
}


def _time(raw: Any, profile: Profile, ctx: DecodeContext) -> int:
    fmt = profile.time.format
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(
                f"must be a number of {'seconds' if fmt == 'epoch_s' else 'milliseconds'} since 1970, got {_show(raw)}"
            )
        return round(raw * 1000) if fmt == "epoch_s" else int(raw)
    if not isinstance(raw, str):
        raise ValueError(f"must be an ISO 8601 time such as 2026-03-08T10:00:00Z, got {_show(raw)}")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time such as 2026-03-08T10:00:00+01:00, got {_show(raw)}") from None
    if when.tzinfo is None:
        if profile.time.naive != "site":
            raise ValueError(f"{raw!r} has no UTC offset; the device must send one (Z or +01:00)")
        if ctx.zone is None:
            raise ValueError(f"{raw!r} is local time and no time zone is known; set [agent].timezone or enroll")
        # The repeated hour at the end of DST reads as its first occurrence (fold=0).
        when = when.replace(tzinfo=ctx.zone)
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _reading(profile: Profile, v: Mapping[str, Any], where: str, ctx: DecodeContext) -> Reading:
    shape = profile.shape
    reading: Reading
    if shape == "count/interval":
        reading = Count(ctx.source, v["line"], v["start"], v["end"], v["entries"], v["exits"])
    elif shape == "count/cumulative":
        return CumulativeCount(ctx.source, v["line"], v["at"], v["entries"], v["exits"])
    elif shape == "occupancy":
        reading = Occupancy(ctx.source, v["zone"], v["at"], v["value"])
    else:
        reading = Transaction(
            v["terminal"], v["txn_id"], v["at"], v["kind"], v["amount"], v["currency"], v["items"], v["raw"]
        )
    try:
        validate(replace(reading, seq=1))
    except MalformedBatch as exc:
        message = exc.message.replace("count.end_ms must be after count.start_ms", "end must be after start")
        raise DecodeError(f"{where or 'body'}: {message}") from None
    return reading


def _show(raw: Any) -> str:
    text = json.dumps(raw) if not isinstance(raw, bytes) else repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."
