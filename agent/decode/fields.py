"""A reading's fields: which ones each reading shape has, and how a device's value becomes one.

`READING_FIELDS` says what a count, an occupancy or a transaction is made of; each field has a
kind (a name, a count, an amount in minor units, a transaction kind, a currency, a time), and
`FIELD_KINDS` reads a raw value as that kind, with the protocol's own bounds (protocol/records.py)
so that a value the collector would refuse is refused here, naming the field. A `FieldSpec` is
where a profile says one field is (decode/profile_fields.py builds them). Times are read by
decode/times.py. Pure: no I/O, no state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from footfall.agent.decode.errors import show
from footfall.agent.decode.formats.tree import ABSENT
from footfall.protocol.records import (
    MAX_RAW_CHARS,
    TRANSACTION_KINDS,
    currency_problem,
    name_problem,
    text_problem,
)

# `decimals = "currency"`: an amount in the currency's major unit, with as many decimals as its
# minor unit has (protocol/currencies.py); scaled once the reading's currency is known.
BY_CURRENCY = -1
# A field's default when the profile must declare it, or when it is the source's name (a POS terminal).
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


def sum_parts(first: Any, others: Sequence[Any], spec: FieldSpec) -> Any:
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


def convert(spec: FieldSpec, raw: Any, textual: bool = False) -> Any:
    """A device's value (not a time) as the field's kind; ValueError naming what is wrong.

    `textual`: the format writes every value as text (XML, forms), so numbers are read from it.
    """
    if spec.mapping is not None:
        key = str(raw).lower() if isinstance(raw, str) else json.dumps(raw)
        lowered = {k.lower(): v for k, v in spec.mapping.items()}
        if key not in lowered:
            raise ValueError(f"{raw!r} is not one of {sorted(spec.mapping)}")
        raw = lowered[key]
    if spec.kind == "time":
        raise ValueError("a time cannot be a constant")
    if textual and isinstance(raw, str) and spec.kind in ("count", "serial", "amount"):
        raw = number(raw)
    return FIELD_KINDS[spec.kind](spec, raw)


def number(text: str) -> Any:
    """A number written as text (XML), as JSON would have given it; other text unchanged."""
    stripped = text.strip()
    if re.fullmatch(r"[+-]?\d+", stripped):
        return int(stripped)
    if re.fullmatch(r"[+-]?\d*\.\d+", stripped):
        return float(stripped) if "e" not in stripped else text
    return text


def convert_constant(spec: FieldSpec, value: Any) -> Any:
    """A profile's `value` or `default`, checked like a frame's value would be (ValueError if it cannot be)."""
    return convert(spec, value)


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
        # Scaled once the currency is known (extract.py).
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
