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
An item that the profile's `[where]` leaves out (a payment not yet completed, another event
type) is neither a reading nor an error: it is counted as skipped.

Times (`[time]`, firmware-adapters/README.md): UTC or an offset as written; a local time
without an offset is read in the site's zone (`naive = "site"`: a repeated hour when the
clocks go back takes the device's DST flag when the profile names one, else the `ambiguous`
rule, by default the first occurrence; a time in the hour the clocks skip is read with the
offset in force before the change, as a clock not yet moved forward would mean it), or with
the device's own fixed offset plus DST hours (`naive = "offset"`), or as UTC (`naive = "utc"`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from footfall.agent.decode.formats.tree import ABSENT
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.protocol.currencies import minor_unit_digits
from footfall.protocol.errors import MalformedBatch
from footfall.protocol.records import (
    MAX_RAW_CHARS,
    TRANSACTION_KINDS,
    Count,
    Occupancy,
    Transaction,
    currency_problem,
    name_problem,
    text_problem,
    validate,
)

if TYPE_CHECKING:
    from footfall.agent.decode.profile import Profile

# `decimals = "currency"`: an amount in the currency's major unit, with as many decimals as its
# minor unit has (protocol/currencies.py); scaled once the reading's currency is known.
BY_CURRENCY = -1


class DecodeError(ValueError):
    """A frame that does not match its profile; the message names the item and the field."""


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
        "report": ("serial", None),
    },
    "count/daily_cumulative": {
        "line": ("name", "main"),
        "at": ("time", REQUIRED),
        "entries": ("count", REQUIRED),
        "exits": ("count", REQUIRED),
        "report": ("serial", None),
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
    # A time of day whose date is at this path (Brickstream: Report@Date + Count@StartTime).
    date: Any = None
    # More paths whose values are added to this one's (an amount as price + tax).
    more: tuple[Any, ...] = ()
    # "refund": a negative amount is a refund of its absolute value.
    negative: str = ""

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


def default_extractors() -> dict[str, Extractor]:
    """A fresh registry of the format extractors this agent knows (the pipeline owns its copy)."""
    # The format modules import this one (DecodeError, the field rules), so they are imported here.
    from footfall.agent.decode.formats import binary, csv, escpos, milesight, modbus
    from footfall.agent.decode.formats.form import FormExtractor
    from footfall.agent.decode.formats.json import JsonExtractor
    from footfall.agent.decode.formats.xml import XmlExtractor

    return {
        "json": JsonExtractor(),
        "form": FormExtractor(),
        "xml": XmlExtractor(),
        "binary": binary.BinaryExtractor(),
        "escpos": escpos.EscposExtractor(),
        "modbus": modbus.ModbusExtractor(),
        "csv": csv.CsvExtractor(),
        "milesight": milesight.MilesightExtractor(),
    }


@dataclass(frozen=True, slots=True)
class WhereRule:
    """`[where]`: an item is read only if the value at `path` is one of `values` (compared as lower-case text)."""

    path: str
    compiled: Any
    values: tuple[str, ...]


@dataclass(slots=True)
class Extraction:
    """What one frame holds: its readings, how many items `[where]` left out, and its event key if any.

    `garbage`: parts of the frame the format skipped without reading them (an ESC/POS command
    it does not know); the frame is still taken, and the source counts them.
    """

    readings: list[Reading] = field(default_factory=list)
    skipped: int = 0
    event_key: str = ""
    garbage: int = 0


def extract(profile: Profile, extractor: Extractor, payload: bytes, ctx: DecodeContext) -> list[Reading]:
    """Every reading in one frame; DecodeError (nothing taken) naming every bad field when any item is wrong."""
    return extract_frame(profile, extractor, payload, ctx).readings


def extract_frame(profile: Profile, extractor: Extractor, payload: bytes, ctx: DecodeContext) -> Extraction:
    """The frame's readings, skipped items and event key; DecodeError (nothing taken) naming every bad field."""
    items = extractor.items(profile.options, payload)
    rules = READING_FIELDS[profile.shape]
    out = Extraction()
    errors: list[str] = []
    textual = bool(getattr(extractor, "textual", False))
    event_id = getattr(profile, "event_id", None)
    garbage = getattr(extractor, "garbage", None)
    if garbage is not None:
        out.garbage = sum(garbage(item) for _, item in items)
    if event_id is not None and items:
        root = getattr(items[0][1], "root", items[0][1])
        raw = extractor.get(root, event_id.compiled)
        if raw is ABSENT or raw is None or raw == "":
            raise DecodeError(f"{event_id.path}: missing, needed to tell a resent event from a new one")
        out.event_key = str(raw)
    for where, item in items:
        if not _selected(profile, extractor, item):
            out.skipped += 1
            continue
        values: dict[str, Any] = {}
        offsets: dict[str, int | None] = {}
        for name, (_, builtin) in rules.items():
            try:
                values[name] = _field_value(profile, extractor, name, builtin, item, where, ctx, textual, offsets)
            except DecodeError as exc:
                errors.append(str(exc))
        if len(values) == len(rules):
            try:
                out.readings.append(_reading(profile, values, where, ctx, offsets))
            except DecodeError as exc:
                errors.append(str(exc))
    if errors:
        more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
        raise DecodeError("; ".join(errors[:_ERRORS_SHOWN]) + more)
    return out


def _selected(profile: Profile, extractor: Extractor, item: Any) -> bool:
    for rule in getattr(profile, "where", ()):
        if not rule.values:
            continue
        raw = extractor.get(item, rule.compiled)
        if raw is ABSENT or raw is None or _as_text(raw).lower() not in rule.values:
            return False
    return True


def _as_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw)


def _field_value(
    profile: Profile,
    extractor: Extractor,
    name: str,
    builtin: Any,
    item: Any,
    where: str,
    ctx: DecodeContext,
    textual: bool = False,
    offsets: dict[str, int | None] | None = None,
) -> Any:
    spec = profile.fields.get(name)
    if name == "at" and profile.time.source == "agent":
        return ctx.received_ms
    if spec is None:
        return ctx.source if builtin is SOURCE_NAME else builtin
    if spec.value is not ABSENT:
        return spec.value
    raw = extractor.get(item, spec.compiled)
    label = ("/" if textual else ".").join(p for p in (where, spec.path) if p)
    if raw is ABSENT or raw is None:
        if spec.default is not ABSENT:
            return spec.default
        if builtin is SOURCE_NAME:
            return ctx.source
        raise DecodeError(f"{label}: " + ("null" if raw is None else "missing") + f", needed for the reading's {name}")
    try:
        if spec.more:
            raw = _sum(raw, [extractor.get(item, p) for p in spec.more], spec)
        if spec.date is not None:
            day = extractor.get(item, spec.date)
            if day is ABSENT or day is None or not isinstance(day, str):
                raise ValueError("is a time of day and its date is missing")
            raw = f"{day.strip()}T{str(raw).strip()}"
        if spec.kind == "time":
            ms, offset = _time(raw, profile, ctx, _time_hints(profile, extractor, item, textual))
            if offsets is not None:
                offsets[name] = offset
            return ms
        return _convert(spec, raw, profile, ctx, textual)
    except ValueError as exc:
        raise DecodeError(f"{label}: {exc}") from None


def _sum(first: Any, others: Sequence[Any], spec: FieldSpec) -> Any:
    """The values at a field's paths added up; ValueError when one is missing or not a number."""
    total = Decimal(0)
    for index, raw in enumerate([first, *others]):
        if raw is ABSENT or raw is None:
            raise ValueError(f"part {index + 1} of the sum is missing")
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"part {index + 1} of the sum must be a number, got {show(raw)}")
        try:
            total += Decimal(str(raw).strip())
        except InvalidOperation:
            raise ValueError(f"part {index + 1} of the sum must be a number, got {show(raw)}") from None
    if total == total.to_integral_value() and spec.decimals == 0:
        return int(total)
    return str(total)


def _time_hints(profile: Profile, extractor: Extractor, item: Any, textual: bool) -> dict[str, Any]:
    """The device's own offset and DST flag for this item, where the profile says it writes them."""
    hints: dict[str, Any] = {}
    for which, compiled in getattr(profile, "time_paths", {}).items():
        raw = extractor.get(item, compiled)
        hints[which] = None if raw is ABSENT or raw is None or raw == "" else raw
    return hints


def _convert(
    spec: FieldSpec, raw: Any, profile: Profile | None, ctx: DecodeContext | None, textual: bool = False
) -> Any:
    if spec.mapping is not None:
        key = str(raw).lower() if isinstance(raw, str) else json.dumps(raw)
        lowered = {k.lower(): v for k, v in spec.mapping.items()}
        if key not in lowered:
            raise ValueError(f"{raw!r} is not one of {sorted(spec.mapping)}")
        raw = lowered[key]
    if spec.kind == "time":
        raise ValueError("a time cannot be a constant")
    if textual and isinstance(raw, str) and spec.kind in ("count", "serial", "amount"):
        raw = _number(raw)
    return FIELD_KINDS[spec.kind](spec, raw)


def _number(text: str) -> Any:
    """A number written as text (XML), as JSON would have given it; other text unchanged."""
    stripped = text.strip()
    if re.fullmatch(r"[+-]?\d+", stripped):
        return int(stripped)
    if re.fullmatch(r"[+-]?\d*\.\d+", stripped):
        return float(stripped) if "e" not in stripped else text
    return text


def convert_constant(spec: FieldSpec, value: Any) -> Any:
    """A profile's `value` or `default`, checked like a frame's value would be (ValueError if it cannot be)."""
    return _convert(spec, value, None, None)


def _name(_: FieldSpec, raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    name = raw if isinstance(raw, str) else ""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{problem}, got {show(raw)}")
    return name


def _text(_: FieldSpec, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {show(raw)}")
    # Line ends as Windows and old Macs write them become newlines; other control characters are refused.
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    problem = text_problem(text, MAX_RAW_CHARS)
    if problem is not None:
        raise ValueError(problem)
    return text


def _count(spec: FieldSpec, raw: Any) -> int:
    if type(raw) is not int or raw < 0:
        raise ValueError(f"must be a whole number >= 0, got {show(raw)}")
    if spec.modulus and raw >= spec.modulus:
        raise ValueError(f"{raw} is not below the counter's modulus {spec.modulus}; check profile.modulus")
    return raw


def _serial(_: FieldSpec, raw: Any) -> int:
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if type(raw) is not int or raw < 0:
        raise ValueError(f"must be a whole number >= 0 (the device's report number), got {show(raw)}")
    return raw


def _amount(spec: FieldSpec, raw: Any) -> int | Decimal:
    signed = spec.negative == "refund"
    if spec.decimals == BY_CURRENCY:
        # Scaled once the currency is known (`_reading`).
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"must be a decimal amount such as 12.50, got {show(raw)}")
        try:
            major = Decimal(str(raw).strip())
        except InvalidOperation:
            raise ValueError(f"must be a decimal amount such as 12.50, got {show(raw)}") from None
        if not major.is_finite() or (major < 0 and not signed):
            raise ValueError(f"must be {'a number' if signed else '>= 0'}, got {show(raw)}")
        return major
    if spec.decimals == 0:
        if type(raw) is not int or (raw < 0 and not signed):
            raise ValueError(f"must be a whole number of minor units (cents) >= 0, got {show(raw)}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"must be a decimal amount such as 12.50, got {show(raw)}")
    try:
        minor = Decimal(str(raw).strip()).scaleb(spec.decimals)
    except InvalidOperation:
        raise ValueError(f"must be a decimal amount such as 12.50, got {show(raw)}") from None
    if minor != minor.to_integral_value() or (minor < 0 and not signed):
        raise ValueError(
            f"must be {'a number' if signed else '>= 0'} with at most {spec.decimals} decimals, got {show(raw)}"
        )
    return int(minor)


def _kind(_: FieldSpec, raw: Any) -> str:
    if raw not in TRANSACTION_KINDS:
        raise ValueError(f"must be one of {', '.join(sorted(TRANSACTION_KINDS))}, got {show(raw)}")
    return str(raw)


def _currency(_: FieldSpec, raw: Any) -> str:
    # Devices write codes in either case; the protocol's are capitals.
    code = raw.upper() if isinstance(raw, str) and raw.isascii() else ""
    problem = currency_problem(code)
    if problem is not None:
        raise ValueError(f"{problem}, got {show(raw)}")
    return code


FIELD_KINDS: Mapping[str, Callable[[FieldSpec, Any], Any]] = {
    "name": _name,
    "text": _text,
    "count": _count,
    "serial": _serial,
    "amount": _amount,
    "kind": _kind,
    "currency": _currency,
    "time": lambda spec, raw: raw,
}


def _time(raw: Any, profile: Profile, ctx: DecodeContext, hints: Mapping[str, Any]) -> tuple[int, int | None]:
    """(Unix ms, the UTC offset in seconds the device wrote or implied, None when it gave none)."""
    fmt = profile.time.format
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(raw, str):
            raw = _number(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(
                f"must be a number of {'seconds' if fmt == 'epoch_s' else 'milliseconds'} since 1970, got {show(raw)}"
            )
        return (round(raw * 1000) if fmt == "epoch_s" else int(raw)), None
    what = "an ISO 8601 time such as 2026-03-08T10:00:00+01:00" if fmt == "iso8601" else f"a time like {fmt}"
    if not isinstance(raw, str):
        raise ValueError(f"must be {what}, got {show(raw)}")
    try:
        when = datetime.fromisoformat(raw.strip()) if fmt == "iso8601" else datetime.strptime(raw.strip(), fmt)
    except ValueError:
        raise ValueError(f"must be {what}, got {show(raw)}") from None
    if when.tzinfo is None:
        when = _localize(when, raw, profile, ctx, hints)
    offset = when.utcoffset()
    return (when - _EPOCH) // timedelta(milliseconds=1), None if offset is None else int(offset.total_seconds())


def _localize(when: datetime, raw: str, profile: Profile, ctx: DecodeContext, hints: Mapping[str, Any]) -> datetime:
    """A local time without offset, made aware by the profile's `[time] naive` rule."""
    naive = profile.time.naive
    if naive == "utc":
        return when.replace(tzinfo=UTC)
    if naive == "offset":
        if hints.get("offset") is None:
            raise ValueError(f"{raw!r} has no UTC offset and the device's offset ({profile.time.offset}) is missing")
        hours = _hours(hints["offset"], profile.time.offset) + _hours(hints.get("dst") or 0, profile.time.dst)
        return when.replace(tzinfo=timezone(timedelta(hours=hours)))
    if naive != "site":
        raise ValueError(f"{raw!r} has no UTC offset; the device must send one (Z or +01:00)")
    if ctx.zone is None:
        raise ValueError(f"{raw!r} is local time and no time zone is known; set [agent].timezone or enroll")
    first, second = when.replace(tzinfo=ctx.zone, fold=0), when.replace(tzinfo=ctx.zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    rule = profile.time.ambiguous
    if first.astimezone(UTC).astimezone(ctx.zone).replace(tzinfo=None) != when:
        # In the hour the clocks skip: fold=0 reads it with the offset before the change.
        if rule == "reject":
            raise ValueError(f"{raw!r} does not exist in {ctx.zone.key}: the clocks went forward over it")
        return first
    flag = hints.get("dst")
    if flag is not None:
        in_dst = _truthy(flag)
        return first if bool(first.dst()) == in_dst else second
    if rule == "reject":
        raise ValueError(
            f"{raw!r} happened twice in {ctx.zone.key} (the clocks went back) and the device gives no DST flag"
        )
    return first if rule == "earlier" else second


def _hours(raw: Any, path: str) -> float:
    """An offset in hours as a device writes it: 1, "+8", "-5", "5.5", "+05:30", "true" (a DST flag: 1 hour)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    text = str(raw).strip()
    if text.lower() in ("true", "false"):
        return 1.0 if text.lower() == "true" else 0.0
    match = re.fullmatch(r"([+-]?)(\d{1,2}):(\d{2})", text)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return sign * (int(match.group(2)) + int(match.group(3)) / 60)
    try:
        hours = float(text)
    except ValueError:
        raise ValueError(f"the device's offset at {path} must be hours such as +1 or -5, got {show(raw)}") from None
    if not -14 <= hours <= 14:
        raise ValueError(f"the device's offset at {path} is {hours} hours, beyond any time zone")
    return hours


def _truthy(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off", ""):
        return False
    try:
        return float(text) != 0
    except ValueError:
        raise ValueError(f"a DST flag must be true/false or a number of hours, got {show(raw)}") from None


def _day(ms: int, offset: int | None, ctx: DecodeContext) -> tuple[str, int]:
    """The local day of an instant (as the device keeps it) and when that day started, for daily counters."""
    instant = datetime.fromtimestamp(ms / 1000, UTC)
    zone_offset = instant.astimezone(ctx.zone).utcoffset() if ctx.zone is not None else None
    if offset is None and zone_offset is None:
        raise ValueError("a daily counter needs to know where the day starts: send an offset, or set [agent].timezone")
    if offset is not None and (zone_offset is None or int(zone_offset.total_seconds()) != offset):
        tz: Any = timezone(timedelta(seconds=offset))
    else:
        tz = ctx.zone
    local: date = instant.astimezone(tz).date()
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return local.isoformat(), (midnight - _EPOCH) // timedelta(milliseconds=1)


def _reading(
    profile: Profile, v: Mapping[str, Any], where: str, ctx: DecodeContext, offsets: Mapping[str, int | None]
) -> Reading:
    shape = profile.shape
    reading: Reading
    if shape == "count/interval":
        end = v["end"]
        end_spec = profile.fields.get("end")
        if end <= v["start"] and end_spec is not None and end_spec.date is not None:
            # A time of day at or before the period's start, on the same date: the period ends the next day.
            end += 86_400_000
        reading = Count(ctx.source, v["line"], v["start"], end, v["entries"], v["exits"])
    elif shape in ("count/cumulative", "count/daily_cumulative"):
        day, day_start = ("", 0)
        if shape == "count/daily_cumulative":
            try:
                day, day_start = _day(v["at"], offsets.get("at"), ctx)
            except ValueError as exc:
                raise DecodeError(f"{where or 'body'}: {exc}") from None
        return CumulativeCount(
            ctx.source, v["line"], v["at"], v["entries"], v["exits"], report=v.get("report"), day=day,
            day_start_ms=day_start,
        )
    elif shape == "occupancy":
        reading = Occupancy(ctx.source, v["zone"], v["at"], v["value"])
    else:
        amount, kind = v["amount"], v["kind"]
        if isinstance(amount, Decimal):
            digits = minor_unit_digits(v["currency"])
            minor = amount.scaleb(digits)
            if minor != minor.to_integral_value():
                raise DecodeError(
                    f"{where or 'body'}: amount {amount} has more decimals than {v['currency']} has ({digits})"
                )
            amount = int(minor)
        if amount < 0:
            if kind != "sale":
                raise DecodeError(f"{where or 'body'}: a {kind} with a negative amount ({amount}) cannot be counted")
            amount, kind = -amount, "refund"
        reading = Transaction(v["terminal"], v["txn_id"], v["at"], kind, amount, v["currency"], v["items"], v["raw"])
    try:
        # A reading timed by the agent's clock is held and re-stamped while that clock is not
        # trusted (agent/clock.py): its time is the agent's business, not the device's.
        validate(replace(reading, seq=1), check_times=profile.time.source != "agent")
    except MalformedBatch as exc:
        message = exc.message.replace("count.end_ms must be after count.start_ms", "end must be after start")
        raise DecodeError(f"{where or 'body'}: {message}") from None
    return reading


def show(raw: Any) -> str:
    """A value as an error message quotes it, cut to 60 characters."""
    try:
        text = json.dumps(raw) if not isinstance(raw, bytes) else repr(raw)
    except (TypeError, ValueError):
        text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."
