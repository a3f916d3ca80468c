"""A profile's paths, compiled by its format: `[fields]`, `[where]`, `[time]` offset and dst, `[dedupe] event_id`.

Each field of the reading's shape (decode/fields.py) is declared by a path where the frame has
it, or a constant `value`, with an optional `default`, `map`, `decimals`, `date` and `negative`;
a path is compiled once, here, by the profile's format, so a path the format cannot read is a
problem of the file (naming its key), never of a frame. Problems go to the `TableReader`, all at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from footfall.agent.config.reader import TableReader
from footfall.agent.decode.fields import BY_CURRENCY, FIELD_KINDS, READING_FIELDS, REQUIRED, FieldSpec, convert_constant
from footfall.agent.decode.formats import Extractor
from footfall.agent.decode.profile import ProfileSection, TimeSection, WhereRule

# The keys a field's table may have (firmware-adapters/README.md documents each).
FIELD_KEYS = ("path", "value", "default", "map", "decimals", "date", "negative")


def where_rules(reader: TableReader, table: Mapping[str, Any], extractor: Extractor | None) -> tuple[WhereRule, ...]:
    """`[where]`: the rules an item must pass to be read; an empty value (a param left empty) turns one off."""
    rules: list[WhereRule] = []
    for path, wanted in table.items():
        key = f"where.{path}" if re.fullmatch(r"[\w\-]+", path) else f'where."{path}"'
        raw = wanted if isinstance(wanted, list) else [wanted]
        if not raw or not all(isinstance(v, str | int | bool) and not isinstance(v, float) for v in raw):
            reader.add(key, 'must be a value or a list of values, e.g. "COMPLETED" or ["CLOSED", "VOIDED"]')
            continue
        if extractor is None:
            continue
        try:
            compiled = extractor.compile_path(path)
        except ValueError as exc:
            reader.add(key, str(exc))
            continue
        texts = [v if isinstance(v, str) else json.dumps(v) for v in raw]
        # An empty value (a param left empty) turns the condition off.
        values = () if "" in texts else tuple(t.lower() for t in texts)
        rules.append(WhereRule(path, compiled, values))
    return tuple(rules)


def time_paths(reader: TableReader, time: TimeSection, extractor: Extractor | None) -> dict[str, Any]:
    """`[time]` checked as a whole, and the paths of the device's own offset and DST flag compiled."""
    if time.format not in ("iso8601", "epoch_s", "epoch_ms") and "%" not in time.format:
        reader.add("time.format", f"must be iso8601, epoch_s, epoch_ms or a strptime pattern such as %Y%m%d%H%M%S, "
                                  f"got {time.format!r}")
    if time.naive == "offset" and not time.offset:
        reader.add("time.offset", 'naive = "offset" needs the path of the device\'s UTC offset (hours)')
    if time.offset and time.naive != "offset":
        reader.add("time.offset", 'only naive = "offset" reads the device\'s offset; remove it or change naive')
    if time.dst and time.naive not in ("offset", "site"):
        reader.add("time.dst", 'a DST flag is read only with naive = "site" or "offset"')
    paths: dict[str, Any] = {}
    for which in ("offset", "dst"):
        text = getattr(time, which)
        if text and extractor is not None:
            try:
                paths[which] = extractor.compile_path(text)
            except ValueError as exc:
                reader.add(f"time.{which}", str(exc))
    return paths


def compiled_field(
    reader: TableReader, key: str, name: str, kind: str, path: Any, extractor: Extractor | None
) -> FieldSpec | None:
    """A path naming one value (`[dedupe] event_id`) compiled; None, with the problem recorded, if it cannot be."""
    if not isinstance(path, str):
        reader.add(key, "must be a path (a string)")
        return None
    if extractor is None:
        return None
    try:
        return FieldSpec(name=name, kind=kind, path=path, compiled=extractor.compile_path(path))
    except ValueError as exc:
        reader.add(key, str(exc))
        return None


def field_specs(
    reader: TableReader,
    table: Mapping[str, Any],
    head: ProfileSection,
    extractor: Extractor | None,
    *,
    agent_time: bool = False,
) -> dict[str, FieldSpec]:
    """`[fields]`: each field of the profile's reading shape, built from its table (or left to its default)."""
    shape = f"count/{head.counter}" if head.reading == "count" else head.reading
    rules = READING_FIELDS[shape]
    out: dict[str, FieldSpec] = {}
    for name in table:
        if name not in rules:
            reader.unknown(name, "fields", list(rules), f" for a {shape} profile")
    for name, (kind, builtin) in rules.items():
        key = f"fields.{name}"
        spec = table.get(name)
        if agent_time and kind == "time":
            if spec is not None:
                reader.add(key, 'comes from the agent\'s clock with [time] source = "agent"; remove it')
            continue
        if spec is None:
            if builtin is REQUIRED:
                reader.add(key, f'required for a {shape} profile, e.g. {name} = {{ path = "{name}" }}')
            continue
        if not isinstance(spec, dict):
            reader.add(key, f'must be a table such as {{ path = "{name}" }}')
            continue
        for extra in spec:
            if extra not in FIELD_KEYS:
                reader.unknown(extra, key, FIELD_KEYS)
        built = _field(reader, key, name, kind, spec, head, extractor)
        if built is not None:
            out[name] = built
    return out


def _field(
    reader: TableReader,
    key: str,
    name: str,
    kind: str,
    spec: Mapping[str, Any],
    head: ProfileSection,
    extractor: Extractor | None,
) -> FieldSpec | None:
    has_path, has_value = "path" in spec, "value" in spec
    if has_path == has_value:
        reader.add(key, "needs exactly one of path (where the frame has it) or value (a constant)")
        return None
    mapping = spec.get("map")
    if mapping is not None and (
        not isinstance(mapping, dict) or not all(isinstance(v, str | int) for v in mapping.values())
    ):
        reader.add(f"{key}.map", 'must be a table from the device\'s words to ours, e.g. { return = "refund" }')
        mapping = None
    decimals = spec.get("decimals", 0)
    if decimals == "currency" and kind == "amount":
        decimals = BY_CURRENCY
    elif type(decimals) is not int or not 0 <= decimals <= 6 or (decimals and kind != "amount"):
        reader.add(
            f"{key}.decimals",
            'only amount takes decimals: 0-6 digits after the point the device sends, or "currency" '
            "(as many as the currency's minor unit has: 2 for EUR, 0 for JPY, 3 for KWD)",
        )
        decimals = 0
    compiled: Any = None
    more: list[Any] = []
    text = ""
    if has_path:
        path = spec["path"]
        paths = path if isinstance(path, list) else [path]
        if not paths or not all(isinstance(p, str) for p in paths):
            reader.add(f"{key}.path", "must be a path, or a list of paths whose numbers are added")
            return None
        if len(paths) > 1 and kind not in ("amount", "count"):
            reader.add(f"{key}.path", "only an amount or a count can be a sum of several paths")
            return None
        text = " + ".join(paths)
        if extractor is None:
            return None
        try:
            compiled, *more = [extractor.compile_path(p) for p in paths]
        except ValueError as exc:
            reader.add(f"{key}.path", str(exc))
            return None
    date: Any = None
    if "date" in spec:
        if kind != "time" or not isinstance(spec["date"], str):
            reader.add(f"{key}.date", "only a time takes date: the path of the date its time of day belongs to")
        elif extractor is not None:
            try:
                date = extractor.compile_path(spec["date"])
            except ValueError as exc:
                reader.add(f"{key}.date", str(exc))
    negative = spec.get("negative", "")
    if negative not in ("", "refund") or (negative and kind != "amount"):
        reader.add(f"{key}.negative", 'only amount takes negative = "refund" (a negative amount is a refund)')
        negative = ""
    built = FieldSpec(
        name=name,
        kind=kind,
        path=text,
        compiled=compiled,
        mapping=MappingProxyType({str(k): v for k, v in mapping.items()}) if mapping else None,
        decimals=decimals,
        modulus=head.modulus if kind == "count" and head.counter != "interval" else 0,
        date=date,
        more=tuple(more),
        negative=negative,
    )
    for which in ("value", "default"):
        if which in spec:
            try:
                built = built.with_constant(which, convert_constant(built, spec[which]))
            except ValueError as exc:
                reader.add(f"{key}.{which}", str(exc))
                return None
    if kind not in FIELD_KINDS:
        raise AssertionError(f"READING_FIELDS names an unknown kind {kind!r}")
    return built
