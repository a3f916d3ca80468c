"""Adapter profiles from their files: `profile.toml` read, checked and bound to a source's params.

Every problem of a file is reported at once, naming the file and the key, through the same
`TableReader` agent.toml is read with. The sections are declared in decode/profile.py; the
paths (`[fields]`, `[where]`, ...) are compiled by decode/profile_fields.py.

A profile with `[params]` is loaded with each param's default (or a placeholder) and bound to
a source's own values by `bind_profile`: every `${name}` in the file is replaced and the file
parsed again, so a source's value is checked exactly like the profile's own text.

The registry of profiles is a plain dict that the pipeline builds and owns (`load_profiles`):
the shipped folder first (the `footfall.firmware_adapters` data package, found with
importlib.resources so it works from a wheel), then each `[agent].adapter_dirs` folder,
whose profiles may replace a shipped one of the same name (logged).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from footfall.agent.config.reader import Problem, TableReader
from footfall.agent.decode.formats import Extractor, default_extractors
from footfall.agent.decode.framing import parse_framing
from footfall.agent.decode.profile import (
    DedupeSection,
    ParamSpec,
    Profile,
    ProfileError,
    ProfileSection,
    SignatureSection,
    TimeSection,
)
from footfall.agent.decode.profile_fields import compiled_field, field_specs, time_paths, where_rules
from footfall.agent.decode.signature import SIGNATURE_SCHEMES

from footfall.logs import event

log = logging.getLogger("footfall.agent.decode")

SHIPPED_PACKAGE = "footfall.firmware_adapters"
PROFILE_FILE = "profile.toml"
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a required param stands for while the profile is checked on its own (no source yet):
# ISO 4217's code for "no currency", so it is valid wherever a param may go (a path, a name, a currency).
PLACEHOLDER = "XXX"


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
        field_specs(reader, _table(reader, body, "fields"), head, extractor, agent_time=agent_time)
        if head is not None
        else {}
    )
    framing = parse_framing(_table(reader, body, "framing"), "framing", reader.add) if "framing" in body else None
    rules = where_rules(reader, _table(reader, body, "where"), extractor)
    paths = time_paths(reader, time, extractor) if time is not None else {}
    event_id = None
    if dedupe is not None and dedupe.event_id:
        event_id = compiled_field(reader, "dedupe.event_id", "event_id", "name", dedupe.event_id, extractor)
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
        time_paths=MappingProxyType(paths),
        data=MappingProxyType(dict(data)),
        raw_options=MappingProxyType(dict(_table(reader, body, head.format))),
        framing=framing,
    )


def bind_profile(profile: Profile, extractors: Mapping[str, Extractor], params: Mapping[str, Any]) -> Profile:
    """The profile with a source's params in place of its `${name}`s; ProfileError if a value does not fit."""
    if not profile.params:
        return profile
    return parse_profile(profile.data, where=profile.source, extractors=extractors, params=params)


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



def _table(reader: TableReader, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        reader.add(name, f"must be a table ([{name}])")
        return {}
    return table
