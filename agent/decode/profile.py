"""Adapter profiles: `firmware-adapters/<family>/profile.toml` into checked, frozen dataclasses.

A profile is data, not code: which wire format the device speaks (`format`, one of the
extractors in extract.py), what it reports (`reading`: count, occupancy or transaction;
for counts, `counter` interval, cumulative or daily_cumulative and its wrap `modulus`), its
time convention (`[time]`), how resends are recognised (`[dedupe]`), which items count
(`[where]`), the settings a source gives it (`[params]`), how its webhooks are signed
(`[signature]`), format options (`[json]`, ...) and where each field of the reading is
(`[fields]`). firmware-adapters/README.md is the reference for the file; every problem is
reported at once, naming the file and the key.

A profile with `[params]` is loaded with each param's default (or a placeholder) and bound to
a source's own values by `bind_profile`: every `${name}` in the file is replaced and the file
parsed again, so a source's value is checked exactly like the profile's own text.

The registry of profiles is a plain dict that the pipeline builds and owns (`load_profiles`):
the shipped folder first (the `footfall.firmware_adapters` data package, found with
importlib.resources so it works from a wheel), then each `[agent].adapter_dirs` folder,
whose profiles may replace a shipped one of the same name (logged).
"""

from __future__ import annotations

import json
import logging
import re
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
    BY_CURRENCY,
    FIELD_KINDS,
    READING_FIELDS,
    REQUIRED,
    Extractor,
    FieldSpec,
    WhereRule,
    convert_constant,
    default_extractors,
)
from footfall.agent.decode.signature import SIGNATURE_SCHEMES
from footfall.agent.sources.framing import Framing, parse_framing

from footfall.logs import event

log = logging.getLogger("footfall.agent.decode")

SHIPPED_PACKAGE = "footfall.firmware_adapters"
PROFILE_FILE = "profile.toml"
_FIELD_KEYS = ("path", "value", "default", "map", "decimals", "date", "negative")
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a required param stands for while the profile is checked on its own (no source yet):
# ISO 4217's code for "no currency", so it is valid wherever a param may go (a path, a name, a currency).
PLACEHOLDER = "XXX"


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
    counter: Literal["interval", "cumulative", "daily_cumulative"] = field(
        default="interval", metadata=meta("choice", "count only: interval, cumulative or daily_cumulative")
    )
    modulus: int = field(
        default=0, metadata=meta("int", "cumulative only: the value at which the counter wraps; 0 = never", min=0)
    )
    delta_at: Literal["start", "end"] = field(
        default="start",
        metadata=meta(
            "choice",
            "cumulative only: where the people between two readings are filed: start (anywhere in the period: "
            "polled or logged totals) or end (at the later reading: a device that pushes when its count changes)",
        ),
    )


@dataclass(frozen=True, slots=True)
class TimeSection:
    """`[time]`: how the device writes times."""

    format: str = field(
        default="iso8601", metadata=meta("str", "iso8601, epoch_s, epoch_ms or a strptime pattern such as %Y%m%d%H%M%S")
    )
    naive: Literal["reject", "site", "utc", "offset"] = field(
        default="reject",
        metadata=meta("choice", "a time without offset: reject it, or read it in the site's zone, as UTC, or offset"),
    )
    offset: str = field(default="", metadata=meta("str", "naive = offset: path of the device's UTC offset in hours"))
    dst: str = field(
        default="", metadata=meta("str", "path of the device's DST flag (site) or DST hours added to offset (offset)")
    )
    ambiguous: Literal["earlier", "later", "reject"] = field(
        default="earlier", metadata=meta("choice", "a repeated local hour with no DST flag: earlier, later or reject")
    )
    source: Literal["device", "agent"] = field(
        default="device",
        metadata=meta("choice", "device: the frame carries the time; agent: the time the agent received or polled it"),
    )


@dataclass(frozen=True, slots=True)
class DedupeSection:
    """`[dedupe]`: how long a taken period or transaction id is remembered, to drop resends."""

    window: float = field(default=7 * 86400.0, metadata=meta("duration", "how long keys are kept", positive=True))
    by: Literal["start", "end"] = field(
        default="start",
        metadata=meta("choice", "a resend: an interval whose start was taken, or which does not end after the latest"),
    )
    event_id: str = field(default="", metadata=meta("str", "path of the event's id: a resent id drops the frame"))
    void_needs_sale: bool = field(
        default=False, metadata=meta("bool", "a void counts only if its sale was taken")
    )


@dataclass(frozen=True, slots=True)
class SignatureSection:
    """`[signature]`: how the webhook's sender signs it; the source's `secret` verifies it."""

    scheme: str = field(metadata=meta("str", "square, lightspeed or hmac-sha256"))
    header: str = field(default="", metadata=meta("str", "hmac-sha256 only: the header that carries the signature"))


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """`[params.NAME]`: a setting each source gives the profile (`params = { NAME = ... }` in agent.toml)."""

    name: str
    doc: str
    default: str | None  # None: required


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
    where: tuple[WhereRule, ...] = ()
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    signature: SignatureSection | None = None
    event_id: FieldSpec | None = None
    time_paths: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    # The format section as written, so a source can override some of its keys (`adapter_options`).
    raw_options: Mapping[str, Any] = field(default_factory=dict)
    # `[framing]`: how a byte stream (serial) is cut into frames; None for message transports.
    framing: Framing | None = None
    # Cumulative counters: where the people between two readings are filed (counters.py).
    delta_at: Literal["start", "end"] = "start"

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
    data: Mapping[str, Any],
    *,
    where: str,
    extractors: Mapping[str, Extractor],
    folder_name: str | None = None,
    params: Mapping[str, str] | None = None,
) -> Profile:
    """Build a Profile from parsed TOML (`params` fill its `${name}`s); raises ProfileError listing every problem."""
    reader = TableReader(Path("."))
    known_sections = ["profile", "time", "dedupe", "where", "params", "signature", "fields", "framing", *extractors]
    for key in data:
        if key not in known_sections:
            reader.unknown(key, "", known_sections)
    specs = _params(reader, _table(reader, data, "params"))
    values = {
        name: str(params[name]) if params is not None and name in params else spec.default
        for name, spec in specs.items()
    }
    body = {key: _substitute(reader, key, value, values) if key != "params" else value for key, value in data.items()}
    head = reader.build(ProfileSection, _table(reader, body, "profile"), "profile")
    time = reader.build(TimeSection, _table(reader, body, "time"), "time")
    dedupe = reader.build(DedupeSection, _table(reader, body, "dedupe"), "dedupe")
    signature = None
    if "signature" in body:
        signature = reader.build(SignatureSection, _table(reader, body, "signature"), "signature")
        _check_signature(reader, signature)
    extractor: Extractor | None = None
    if head is not None:
        if folder_name is not None and head.name != folder_name:
            reader.add("profile.name", f"{head.name!r} must equal the folder's name {folder_name!r}")
        extractor = extractors.get(head.format)
        if extractor is None:
            reader.add("profile.format", f"unknown format {head.format!r}; known: {', '.join(extractors)}")
        if head.reading != "count" and head.counter != "interval":
            reader.add("profile.counter", "only count profiles are cumulative; remove it")
        if head.modulus and not (head.reading == "count" and head.counter != "interval"):
            reader.add("profile.modulus", 'only a cumulative counter wraps; remove it or set counter = "cumulative"')
        if head.delta_at != "start" and not (head.reading == "count" and head.counter != "interval"):
            reader.add("profile.delta_at", "only a cumulative counter's deltas have a place to be filed; remove it")
    for name in extractors:
        if name in body and (head is None or name != head.format):
            reader.add(name, f"a [{name}] section belongs to format = {name!r} profiles")
    options = None
    if extractor is not None and head is not None:
        options = extractor.parse_options(_table(reader, body, head.format), head.format, reader.add)
    agent_time = time is not None and time.source == "agent"
    if agent_time and head is not None and head.reading == "count" and head.counter != "cumulative":
        reader.add("time.source", 'an interval count\'s periods come from the device; "agent" needs a reading '
                   "with one time (cumulative count, occupancy, transaction)")
    fields = (
        _fields(reader, _table(reader, body, "fields"), head, extractor, agent_time=agent_time)
        if head is not None
        else {}
    )
    framing = parse_framing(_table(reader, body, "framing"), "framing", reader.add) if "framing" in body else None
    rules = _where(reader, _table(reader, body, "where"), extractor)
    time_paths = _time_paths(reader, time, extractor) if time is not None else {}
    event_id = None
    if dedupe is not None and dedupe.event_id:
        event_id = _compiled(reader, "dedupe.event_id", "event_id", "name", dedupe.event_id, extractor)
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
        delta_at=head.delta_at,
        time=time,
        dedupe=dedupe,
        options=options,
        fields=MappingProxyType(fields),
        where=rules,
        params=MappingProxyType(specs),
        signature=signature,
        event_id=event_id,
        time_paths=MappingProxyType(time_paths),
        data=MappingProxyType(dict(data)),
        raw_options=MappingProxyType(dict(_table(reader, body, head.format))),
        framing=framing,
    )


def bind_profile(profile: Profile, extractors: Mapping[str, Extractor], params: Mapping[str, Any]) -> Profile:
    """The profile with a source's params in place of its `${name}`s; ProfileError if a value does not fit."""
    if not profile.params:
        return profile
    return parse_profile(profile.data, where=profile.source, extractors=extractors, params=params)


def param_problems(profile: Profile, params: Mapping[str, Any]) -> list[str]:
    """What is wrong with a source's params for this profile: unknown names, required ones missing."""
    problems = [
        f"unknown param {name!r} for adapter {profile.name}; "
        + (f"its params: {', '.join(profile.params)}" if profile.params else "it takes none")
        for name in params
        if name not in profile.params
    ]
    problems += [
        f"adapter {profile.name} needs params.{name}: {spec.doc}"
        for name, spec in profile.params.items()
        if spec.default is None and name not in params
    ]
    return problems


def _params(reader: TableReader, table: Mapping[str, Any]) -> dict[str, ParamSpec]:
    specs: dict[str, ParamSpec] = {}
    for name, spec in table.items():
        key = f"params.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            reader.add(key, "a param name is letters, digits and _ (it is written ${name} in the profile)")
            continue
        if not isinstance(spec, dict):
            reader.add(key, 'must be a table such as { doc = "what it is", default = "" }')
            continue
        for extra in spec:
            if extra not in ("doc", "default"):
                reader.unknown(extra, key, ("doc", "default"))
        doc, default = spec.get("doc", ""), spec.get("default")
        if not isinstance(doc, str) or not doc:
            reader.add(f"{key}.doc", "say in a few words what the source must give here")
            doc = ""
        if default is not None and not isinstance(default, str | int):
            reader.add(f"{key}.default", "must be text or a whole number")
            default = None
        specs[name] = ParamSpec(name, doc, None if default is None else str(default))
    return specs


def _substitute(reader: TableReader, key: str, value: Any, params: Mapping[str, str | None]) -> Any:
    """`value` with every `${name}` replaced by its param (a required one unset: PLACEHOLDER)."""
    if isinstance(value, dict):
        return {k: _substitute(reader, f"{key}.{k}", v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(reader, f"{key}[{i}]", v, params) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            reader.add(key, f"${{{name}}} is not a declared param; add [params.{name}]")
            return ""
        given = params[name]
        return PLACEHOLDER if given is None else given

    return _PARAM.sub(one, value)


def _check_signature(reader: TableReader, section: SignatureSection | None) -> None:
    if section is None:
        return
    if section.scheme not in SIGNATURE_SCHEMES:
        reader.add("signature.scheme", f"unknown scheme {section.scheme!r}; known: {', '.join(SIGNATURE_SCHEMES)}")
    elif section.scheme == "hmac-sha256" and not section.header:
        reader.add("signature.header", "the hmac-sha256 scheme needs the header that carries the signature")
    elif section.header and section.scheme != "hmac-sha256":
        reader.add("signature.header", f"the {section.scheme} scheme has its own header; remove this")


def _where(reader: TableReader, table: Mapping[str, Any], extractor: Extractor | None) -> tuple[WhereRule, ...]:
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


def _time_paths(reader: TableReader, time: TimeSection, extractor: Extractor | None) -> dict[str, Any]:
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


def _compiled(
    reader: TableReader, key: str, name: str, kind: str, path: Any, extractor: Extractor | None
) -> FieldSpec | None:
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
