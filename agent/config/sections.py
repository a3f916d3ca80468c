"""`agent.toml`'s sections as typed, frozen dataclasses: each key with its kind, its default and its doc.

One dataclass per `[section]`, `SourceConfig` for a `[[sources]]` entry (whose transport's own
keys are read with the options class config/transports.py registers for it), and
`AgentConfig` for the whole file. `CONFIG.md` documents every key with its default, and a test
keeps it complete. config/load.py reads a file into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from footfall.agent.config.reader import meta
from footfall.agent.config.transports import transports

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["logfmt", "json"]


@dataclass(frozen=True, slots=True)
class AgentSection:
    """`[agent]`: where the agent keeps its state, how it logs, where profiles come from."""

    state_dir: Path = field(
        default=Path("/var/lib/footfall"), metadata=meta("path", "buffer.sqlite, agent.key, identity.json, status.json")
    )
    log_level: LogLevel = field(default="info", metadata=meta("choice", "debug, info, warning or error"))
    log_format: LogFormat = field(default="logfmt", metadata=meta("choice", "logfmt or json"))
    timezone: str = field(
        default="",
        metadata=meta("zone", "IANA zone for devices that send local time without an offset; '' = the site's"),
    )
    adapter_dirs: tuple[Path, ...] = field(
        default=(), metadata=meta("paths", "extra profile folders, searched after the shipped ones")
    )
    source_backoff_initial: float = field(
        default=1.0, metadata=meta("duration", "first wait before a source that failed to start is tried again",
                                   positive=True)
    )
    source_backoff_max: float = field(
        default=300.0, metadata=meta("duration", "the ceiling of that wait, which doubles each failure", positive=True)
    )


@dataclass(frozen=True, slots=True)
class CollectorSection:
    """`[collector]`: where uploads go."""

    url: str = field(default="", metadata=meta("url", "the collector's base URL; '' = the one enrollment recorded"))
    timeout: float = field(default=30.0, metadata=meta("duration", "one HTTP request's time limit", positive=True))


@dataclass(frozen=True, slots=True)
class BufferSection:
    """`[buffer]`: the SQLite buffer's bound and its group-commit window."""

    max_size: int = field(
        default=1024**3,
        metadata=meta("size", "records beyond this are dropped oldest first, with a gap event", min=64 * 1024),
    )
    commit_interval: float = field(
        default=1.0, metadata=meta("duration", "group commit window: at most one fsync'd commit per interval")
    )


@dataclass(frozen=True, slots=True)
class UploadSection:
    """`[upload]`: how records are batched and retried."""

    max_records: int = field(default=1000, metadata=meta("int", "records per batch", min=1, max=20_000))
    max_bytes: int = field(
        default=1024**2, metadata=meta("size", "packed bytes per batch (before compression)", min=1024, max=8 * 1024**2)
    )
    max_age: float = field(
        default=2.0, metadata=meta("duration", "send a partial batch once its oldest record is this old")
    )
    backoff_initial: float = field(default=1.0, metadata=meta("duration", "first retry delay", positive=True))
    backoff_max: float = field(
        default=300.0, metadata=meta("duration", "longest retry delay (and cap on Retry-After)", positive=True)
    )


@dataclass(frozen=True, slots=True)
class ClockSection:
    """`[clock]`: when the agent believes its own wall clock (agent/clock.py)."""

    require_sync: bool = field(
        default=True,
        metadata=meta("bool", "trust the clock only once NTP or the collector confirms it; false: when plausible"),
    )
    not_before: str = field(
        default="", metadata=meta("date", "a clock earlier than this is wrong; '' = this agent's build date")
    )
    max_skew: float = field(
        default=10.0, metadata=meta("duration", "how far from the collector's clock still confirms ours", positive=True)
    )


@dataclass(frozen=True, slots=True)
class HttpPushSection:
    """`[http_push]`: the one HTTP server that every `http_push` source shares."""

    listen: str = field(
        default="127.0.0.1:8088", metadata=meta("listen", "host:port; 0.0.0.0:8088 to accept devices on the store LAN")
    )
    max_body: int = field(
        default=1024**2, metadata=meta("size", "largest request body a device may post (413 above)", min=1024)
    )


@dataclass(frozen=True, slots=True)
class HeartbeatSection:
    """`[heartbeat]`: how often the agent reports its status to the collector and asks what to run."""

    interval: float = field(
        default=60.0,
        metadata=meta("duration", "time between heartbeats; a heartbeat the uplink cannot carry is skipped", min=0.05),
    )


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """`[metrics]`: the optional Prometheus endpoint."""

    listen: str = field(
        default="", metadata=meta("optional_listen", "host:port serving /metrics for Prometheus; '' = off")
    )



@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One `[[sources]]` entry: a device (or POS) the agent reads, the transport and the adapter profile."""

    name: str = field(metadata=meta("name", "the sensor (or terminal) name its records carry; unique"))
    transport: str = field(metadata=meta("name", "how readings arrive: " + ", ".join(transports())))
    adapter: str = field(metadata=meta("name", "the profile in firmware-adapters/ (or adapter_dirs) that decodes it"))
    timezone: str = field(default="", metadata=meta("zone", "this device's zone when it differs from [agent].timezone"))
    enabled: bool = field(default=True, metadata=meta("bool", "false keeps the entry but does not start it"))
    # The transport's own keys, read with the options class its transport registers (config/transports.py).
    options: Any = field(default=None, metadata={"kind": "options", "doc": "the transport's options"})
    params: Mapping[str, str] = field(
        default_factory=dict, metadata=meta("params", "the adapter's settings, e.g. { location_id = \"L1\" }")
    )


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The whole `agent.toml`."""

    agent: AgentSection = AgentSection()
    collector: CollectorSection = CollectorSection()
    buffer: BufferSection = BufferSection()
    upload: UploadSection = UploadSection()
    http_push: HttpPushSection = HttpPushSection()
    heartbeat: HeartbeatSection = HeartbeatSection()
    metrics: MetricsSection = MetricsSection()
    clock: ClockSection = ClockSection()
    sources: tuple[SourceConfig, ...] = ()
    path: Path | None = None

    @property
    def enabled_sources(self) -> tuple[SourceConfig, ...]:
        """The sources to start."""
        return tuple(s for s in self.sources if s.enabled)


SECTIONS: Mapping[str, type[Any]] = MappingProxyType(
    {
        "agent": AgentSection,
        "collector": CollectorSection,
        "buffer": BufferSection,
        "upload": UploadSection,
        "http_push": HttpPushSection,
        "heartbeat": HeartbeatSection,
        "metrics": MetricsSection,
        "clock": ClockSection,
    }
)
