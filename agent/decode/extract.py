"""Extraction: one frame's bytes become readings, as its profile says. Pure: no I/O, no state.

Two layers. A *format extractor* (decode/formats/) knows a wire format: it parses the bytes into
items (one per reading) and reads a value at a path inside an item. The *field rules*
(decode/fields.py, decode/times.py) know footfall's readings: which fields a count, occupancy or
transaction has, and how a value becomes one (a time, a count, an amount in minor units, a
transaction kind). This module joins them: for each item, each field the reading's shape needs,
read where the profile says and converted by its kind. So a new format (xml, csv, line-regex,
binary frames, Modbus register maps) is one extractor class added to
`formats.default_extractors`, and every format gets the same field checks and error messages.

JSON paths are a small syntax of our own rather than jmespath: a path here only has to name
one value (`counts`, `data.items[0].count`, `["sensor-time"].time`, `$` for the whole body),
and it must tell "absent" from `null` so that a missing field gets an error naming it.
jmespath answers None for both, and would be one more dependency on every gateway.

A frame is all or nothing: any bad item rejects the whole frame with a DecodeError naming the
item and the field as the device wrote them (`counts[1].in: ...`), and nothing is written.
An item that the profile's `[where]` leaves out (a payment not yet completed, another event
type) is neither a reading nor an error: it is counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.fields import READING_FIELDS, SOURCE_NAME, convert, sum_parts
from footfall.agent.decode.formats import Extractor
from footfall.agent.decode.formats.tree import ABSENT
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.agent.decode.times import local_day, read_time
from footfall.protocol.currencies import minor_unit_digits
from footfall.protocol.errors import MalformedBatch
from footfall.protocol.records import Count, Occupancy, Transaction, validate

if TYPE_CHECKING:
    from footfall.agent.decode.profile import Profile

# A frame's errors are all reported, up to this many (a 500-item frame with one bad field per item stays readable).
_ERRORS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What extraction needs beyond the profile: the source's name, its time zone, and the frame's receipt time.

    `received_ms` is the reading's time for profiles with `[time] source = "agent"` (devices without a clock).
    """

    source: str
    zone: ZoneInfo | None = None
    received_ms: int = 0


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
            raw = sum_parts(raw, [extractor.get(item, p) for p in spec.more], spec)
        if spec.date is not None:
            day = extractor.get(item, spec.date)
            if day is ABSENT or day is None or not isinstance(day, str):
                raise ValueError("is a time of day and its date is missing")
            raw = f"{day.strip()}T{str(raw).strip()}"
        if spec.kind == "time":
            ms, offset = read_time(raw, profile.time, ctx.zone, _time_hints(profile, extractor, item, textual))
            if offsets is not None:
                offsets[name] = offset
            return ms
        return convert(spec, raw, textual)
    except ValueError as exc:
        raise DecodeError(f"{label}: {exc}") from None



def _time_hints(profile: Profile, extractor: Extractor, item: Any, textual: bool) -> dict[str, Any]:
    """The device's own offset and DST flag for this item, where the profile says it writes them."""
    hints: dict[str, Any] = {}
    for which, compiled in getattr(profile, "time_paths", {}).items():
        raw = extractor.get(item, compiled)
        hints[which] = None if raw is ABSENT or raw is None or raw == "" else raw
    return hints


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
                day, day_start = local_day(v["at"], offsets.get("at"), ctx.zone)
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
