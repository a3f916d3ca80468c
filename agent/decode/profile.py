"""Adapter profiles: `firmware-adapters/<family>/profile.toml` into checked, frozen dataclasses.

A profile is data, not code: which wire format the device speaks (`format`, one of the
extractors in extract.py), what it reports (`reading`: count, occupancy or transaction;
for counts, `counter` interval or cumulative and its wrap `modulus`), its time convention
(`[time]`), how long resends are remembered (`[dedupe]`), format options (`[json]`, ...)
and where each field of the reading is (`[fields]`). firmware-adapters/README.md is the
reference for the file; every problem is reported at once, naming the file and the key.

The registry of profiles is a plain dict that the pipeline builds and owns (`load_profiles`):
the shipped folder first (the `footfall.firmware_adapters` data package, found with
importlib.resources so it works from a wheel), then each `[agent].adapter_dirs` folder,
whose profiles may replace a shipped one of the same name (logged).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from footfall.agent.config import ConfigError, Problem, TableReader, meta
from footfall.agent.decode.extract import (
    FIELD_KINDS,
    READING_FIELDS,
    REQUIRED,
    Extractor,
    FieldSpec,
    convert_constant,
    default_extractors,
)

from footfall.logs import event

log = logging.getLogger("footfall.agent.decode")

SHIPPED_PACKAGE = "footfall.firmware_adapters"
PROFILE_FILE = "profile.toml"
_FIELD_KEYS = ("path", "value", "default", "map", "decimals")


class ProfileError(ConfigError):
    """A profile file that cannot be used; `where` is the file, each problem names its key."""


@dataclass(frozen=True, slots=True)
class ProfileSection:
    """`[profile]`: what the device is and what it reports."""

    name: str = field(metadata=meta("name", "the profile's name; must equal its folder's name"))
    format: str = field(metadata=meta("str", "the wire format: an extractor name such as json"))
    reading: Literal["count", "occupancy", "transaction"] = field(
        metadata=meta("choice", "count, occupancy or transaction")
    )
    description: str = field(default="", metadata=meta("str", "one line about the device family"))
    counter: Literal["interval", "cumulative"] = field(
        default="interval", metadata=meta("choice", "count only: interval or cumulative")
    )
    modulus: int = field(
        default=0, metadata=meta("int", "cumulative only: the value at which the counter wraps; 0 = never", min=0)
    )


@dataclass(frozen=True, slots=True)
class TimeSection:
    """`[time]`: how the device writes times."""

    format: Literal["iso8601", "epoch_s", "epoch_ms"] = field(
        default="iso8601", metadata=meta("choice", "iso8601, epoch_s or epoch_ms")
    )
    naive: Literal["reject", "site"] = field(
        default="reject", metadata=meta("choice", "a time without offset: reject it, or read it in the site's zone")
    )
    source: Literal["device", "agent"] = field(
        default="device",
        metadata=meta("choice", "device: the frame carries the time; agent: the time the agent received or polled it"),
    )


@dataclass(frozen=True, slots=True)
class DedupeSection:
    """`[dedupe]`: how long a taken period or transaction id is remembered, to drop resends."""

    window: float = field(default=7 * 86400.0, metadata=meta("duration", "how long keys are kept", positive=True))


@dataclass(frozen=True, slots=True)
class Profile:
    """A loaded adapter profile."""

    name: str
    description: str
    source: str
    format: str
    reading: Literal["count", "occupancy", "transaction"]
    counter: Literal["interval", "cumulative"]
    modulus: int
    time: TimeSection
    dedupe: DedupeSection
    options: Any
    fields: Mapping[str, FieldSpec]

    @property
    def shape(self) -> str:
        """The reading's shape: count/interval, count/cumulative, occupancy or transaction."""
        return f"count/{self.counter}" if self.reading == "count" else self.reading


def shipped_root() -> Traversable:
    """The folder of profiles that ships with footfall."""
    return files(SHIPPED_PACKAGE)


def load_profiles(
    extra_dirs: Iterable[Path] = (), *, extractors: Mapping[str, Extractor] | None = None
) -> dict[str, Profile]:
    """Every profile, shipped first then `extra_dirs`; raises ProfileError listing every problem of every file."""
    extractors = default_extractors() if extractors is None else extractors
    profiles: dict[str, Profile] = {}
    problems: list[Problem] = []
    roots: list[Traversable] = [shipped_root(), *(Path(d) for d in extra_dirs)]
    for root in roots:
        if not root.is_dir():
            problems.append(Problem(str(root), "adapter folder not found; fix [agent].adapter_dirs"))
            continue
        for folder in sorted(root.iterdir(), key=lambda f: f.name):
            candidate = folder / PROFILE_FILE
            if not folder.is_dir() or not candidate.is_file():
                continue
            try:
                profile = load_profile(candidate, extractors, folder_name=folder.name)
            except ProfileError as exc:
                problems.extend(
                    Problem(f"{exc.where}: {p.key}" if p.key else exc.where, p.message) for p in exc.problems
                )
                continue
            replaced = profiles.get(profile.name)
            if replaced is not None:
                event(log, "profile_overridden", profile=profile.name, by=profile.source, was=replaced.source)
            profiles[profile.name] = profile
    if problems:
        raise ProfileError("adapter profiles", problems)
    return profiles


def load_profile(file: Traversable, extractors: Mapping[str, Extractor], *, folder_name: str | None = None) -> Profile:
    """One profile file; raises ProfileError naming the file and each bad key."""
    where = str(file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(where, [Problem("", f"cannot read the file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(where, [Problem("", f"not valid TOML: {exc}")]) from None
    return parse_profile(data, where=where, extractors=extractors, folder_name=folder_name)


def parse_profile(
    data: Mapping[str, Any], *, where: str, extractors: Mapping[str, Extractor], folder_name: str | None = None
) -> Profile:
    """Build a Profile from parsed TOML; raises ProfileError listing every problem."""
    reader = TableReader(Path("."))
    known_sections = ["profile", "time", "dedupe", "fields", *extractors]
    for key in data:
        if key not in known_sections:
            reader.unknown(key, "", known_sections)
    head = reader.build(ProfileSection, _table(reader, data, "profile"), "profile")
    time = reader.build(TimeSection, _table(reader, data, "time"), "time")
    dedupe = reader.build(DedupeSection, _table(reader, data, "dedupe"), "dedupe")
    extractor: Extractor | None = None
    if head is not None:
        if folder_name is not None and head.name != folder_name:
            reader.add("profile.name", f"{head.name!r} must equal the folder's name {folder_name!r}")
        extractor = extractors.get(head.format)
        if extractor is None:
            reader.add("profile.format", f"unknown format {head.format!r}; known: {', '.join(extractors)}")
        if head.reading != "count" and head.counter != "interval":
            reader.add("profile.counter", "only count profiles are cumulative; remove it")
        if head.modulus and not (head.reading == "count" and head.counter == "cumulative"):
            reader.add("profile.modulus", 'only a cumulative counter wraps; remove it or set counter = "cumulative"')
    for name in extractors:
        if name in data and (head is None or name != head.format):
            reader.add(name, f"a [{name}] section belongs to format = {name!r} profiles")
    options = None
    if extractor is not None and head is not None:
        options = extractor.parse_options(_table(reader, data, head.format), head.format, reader.add)
    agent_time = time is not None and time.source == "agent"
    if agent_time and head is not None and head.reading == "count" and head.counter == "interval":
        reader.add("time.source", 'an interval count\'s periods come from the device; "agent" needs a reading '
                   "with one time (cumulative count, occupancy, transaction)")
    fields = (
        _fields(reader, _table(reader, data, "fields"), head, extractor, agent_time=agent_time)
        if head is not None
        else {}
    )
    if reader.problems or head is None or time is None or dedupe is None:
        raise ProfileError(where, reader.problems)
    return Profile(
        name=head.name,
        description=head.description,
        source=where,
        format=head.format,
        reading=head.reading,
        counter=head.counter,
        modulus=head.modulus,
        time=time,
        dedupe=dedupe,
        options=options,
        fields=MappingProxyType(fields),
    )


def _table(reader: TableReader, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        reader.add(name, f"must be a table ([{name}])")
        return {}
    return table


def _fields(
    reader: TableReader,
    table: Mapping[str, Any],
    head: ProfileSection,
    extractor: Extractor | None,
    *,
    agent_time: bool = False,
) -> dict[str, FieldSpec]:
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
            if extra not in _FIELD_KEYS:
                reader.unknown(extra, key, _FIELD_KEYS)
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
    if type(decimals) is not int or not 0 <= decimals <= 6 or (decimals and kind != "amount"):
        reader.add(f"{key}.decimals", "only amount takes decimals: 0-6 digits after the point the device sends")
        decimals = 0
    compiled: Any = None
    if has_path:
        path = spec["path"]
        if not isinstance(path, str):
            reader.add(f"{key}.path", "must be a string")
            return None
        if extractor is None:
            return None
        try:
            compiled = extractor.compile_path(path)
        except ValueError as exc:
            reader.add(f"{key}.path", str(exc))
            return None
    built = FieldSpec(
        name=name,
        kind=kind,
        path=spec.get("path", ""),
        compiled=compiled,
        mapping=MappingProxyType({str(k): v for k, v in mapping.items()}) if mapping else None,
        decimals=decimals,
        modulus=head.modulus if kind == "count" and head.counter == "cumulative" else 0,
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
