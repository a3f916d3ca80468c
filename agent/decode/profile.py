"""Adapter profiles: what a loaded `firmware-adapters/<family>/profile.toml` is, as checked, frozen dataclasses.

A profile is data, not code: which wire format the device speaks (`format`, one of the
extractors in decode/formats/), what it reports (`reading`: count, occupancy or transaction;
for counts, `counter` interval, cumulative or daily_cumulative and its wrap `modulus`), its
time convention (`[time]`), how resends are recognised (`[dedupe]`), which items count
(`[where]`), the settings a source gives it (`[params]`), how its webhooks are signed
(`[signature]`), how a byte stream is cut into frames (`[framing]`), format options (`[json]`,
...) and where each field of the reading is (`[fields]`). firmware-adapters/README.md is the
reference for the file. Each section's keys are declared here once, with their kinds and docs;
decode/profile_load.py reads a file into them and decode/profile_fields.py compiles its paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from footfall.agent.config.reader import ConfigError, meta
from footfall.agent.decode.fields import FieldSpec
from footfall.agent.decode.framing import Framing


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
class WhereRule:
    """`[where]`: an item is read only if the value at `path` is one of `values` (compared as lower-case text)."""

    path: str
    compiled: Any
    values: tuple[str, ...]


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
