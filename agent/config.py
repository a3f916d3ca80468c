"""`agent.toml` into typed, frozen dataclasses, checked once at start.

Every problem in the file is collected and reported at once, each naming its full key
(`sources[2].adapter`), the source it belongs to and what is allowed, so a technician fixes
the file in one pass. Unknown keys are errors, with a "did you mean" when one is close:
a typo must not silently fall back to a default.

Each section is a dataclass whose fields carry their kind (duration, size, path, ...) in
`metadata`; one small builder reads any of them. A transport's own options are a dataclass
of their own, looked up by the source's `transport` in `TRANSPORT_OPTIONS`: a new transport
(serial, modbus, http_poll, mqtt, csv_dir) adds one dataclass and one entry there.
`CONFIG.md` documents every key with its default, and a test keeps it complete.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from footfall.protocol.records import name_problem

from footfall.units import parse_duration, parse_size

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["logfmt", "json"]

DEFAULT_CONFIG_PATH = Path("/etc/footfall/agent.toml")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file: the full key and what to do about it."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """A config (or adapter profile) that cannot be used; `problems` lists every reason at once."""

    def __init__(self, where: str, problems: list[Problem]) -> None:
        self.where = where
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{where} has {count}:\n" + "\n".join(f"  - {p}" for p in problems))


def meta(kind: str, doc: str, **rules: Any) -> dict[str, Any]:
    """A config field's metadata: its kind (how a TOML value is read), a one-line doc and validation rules."""
    return {"kind": kind, "doc": doc, **rules}


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
class HttpPushOptions:
    """Options of a source with `transport = "http_push"`: the device POSTs to a path on the shared server."""

    path: str = field(metadata=meta("route", "the URL path the device POSTs to, e.g. /push/entrance"))
    token: str = field(default="", metadata=meta("str", "if set, the device must send `Authorization: Bearer <token>`"))
    secret: str = field(
        default="",
        repr=False,
        metadata=meta("str", "the key that checks a signed webhook (adapters with [signature])", signed_only=True),
    )
    public_url: str = field(
        default="",
        # Kept exactly as written (no trailing-slash trimming): Square signs this very string.
        metadata=meta(
            "str", "the URL the webhook sender was given, when a proxy changes it (Square signs it)", signed_only=True
        ),
    )


Parity = Literal["none", "even", "odd", "mark", "space"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceOptions:
    """Keys every pulling transport (serial, modbus, mqtt, http_poll, csv_dir) shares."""

    adapter_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=meta("table", "overrides of the profile's format section for this device (register map, template)"),
    )
    reconnect_min: float = field(default=1.0, metadata=meta("duration", "first reconnect delay", positive=True))
    reconnect_max: float = field(default=60.0, metadata=meta("duration", "longest reconnect delay", positive=True))
    stable_after: float = field(
        default=30.0,
        metadata=meta(
            "duration",
            "a connection counts as healthy (the reconnect delay starts again from reconnect_min) once a "
            "frame arrived or it stayed up this long; one that drops sooner keeps the delay growing",
            positive=True,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialOptions(DeviceOptions):
    """Options of a source with `transport = "serial"`: a device on a serial port, framed by its profile."""

    port: str = field(metadata=meta("str", "the port, e.g. /dev/serial/by-id/usb-FTDI_...-port0 or /dev/ttyUSB0"))
    baud: int = field(default=9600, metadata=meta("int", "bits per second", min=50, max=4_000_000))
    parity: Parity = field(default="none", metadata=meta("choice", "none, even, odd, mark or space"))
    stop_bits: int = field(default=1, metadata=meta("int", "1 or 2", min=1, max=2))
    byte_size: int = field(default=8, metadata=meta("int", "data bits, 5 to 8", min=5, max=8))
    request: str = field(default="", metadata=meta("str", "bytes sent every request_interval to ask for data"))
    request_interval: float = field(default=10.0, metadata=meta("duration", "how often request is sent", positive=True))
    quiet_after: float = field(
        default=0.0,
        metadata=meta("duration", "report the device as degraded after this long without a frame; 0 = never"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusSourceOptions(DeviceOptions):
    """Options of a source with `transport = "modbus"`: one unit on a Modbus TCP or RTU bus."""

    mode: Literal["tcp", "rtu"] = field(default="tcp", metadata=meta("choice", "tcp or rtu"))
    host: str = field(default="", metadata=meta("str", "tcp: the device's or gateway's address"))
    port: int = field(default=502, metadata=meta("int", "tcp: the port", min=1, max=65535))
    serial_port: str = field(default="", metadata=meta("str", "rtu: the serial port of the bus"))
    baud: int = field(default=9600, metadata=meta("int", "rtu: bits per second", min=50, max=4_000_000))
    parity: Parity = field(default="none", metadata=meta("choice", "rtu: none, even, odd, mark or space"))
    stop_bits: int = field(default=1, metadata=meta("int", "rtu: 1 or 2", min=1, max=2))
    byte_size: int = field(default=8, metadata=meta("int", "rtu: data bits", min=5, max=8))
    unit: int = field(default=1, metadata=meta("int", "the unit (slave) id, 0-247", min=0, max=247))
    interval: float = field(default=10.0, metadata=meta("duration", "how often the registers are read", positive=True))
    timeout: float = field(default=1.0, metadata=meta("duration", "time limit of one request", positive=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttOptions(DeviceOptions):
    """Options of a source with `transport = "mqtt"`: a subscription on an MQTT broker."""

    host: str = field(metadata=meta("str", "the broker's address"))
    port: int = field(default=1883, metadata=meta("int", "the broker's port (8883 for TLS)", min=1, max=65535))
    topics: tuple[str, ...] = field(metadata=meta("strs", 'topic filters, e.g. ["vs133/+/data"]'))
    qos: int = field(default=1, metadata=meta("int", "0 or 1", min=0, max=1))
    client_id: str = field(default="", metadata=meta("str", "'' = footfall-<host name>-<source name>"))
    clean_session: bool = field(
        default=False, metadata=meta("bool", "false keeps unacknowledged messages at the broker")
    )
    username: str = field(default="", metadata=meta("str", "broker user"))
    password: str = field(default="", metadata=meta("str", "broker password"))
    tls: bool = field(default=False, metadata=meta("bool", "connect with TLS"))
    ca_file: str = field(default="", metadata=meta("str", "tls: CA bundle; '' = the system's"))
    cert_file: str = field(default="", metadata=meta("str", "tls: client certificate"))
    key_file: str = field(default="", metadata=meta("str", "tls: client key"))
    keepalive: float = field(default=30.0, metadata=meta("duration", "MQTT keepalive", positive=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPollOptions(DeviceOptions):
    """Options of a source with `transport = "http_poll"`: the agent GETs a URL on an interval."""

    url: str = field(metadata=meta("url", "what to GET, e.g. http://10.0.0.5/api/counts"))
    interval: float = field(default=60.0, metadata=meta("duration", "time between polls", positive=True))
    timeout: float = field(default=10.0, metadata=meta("duration", "time limit of one request", positive=True))
    headers: Mapping[str, Any] = field(default_factory=dict, metadata=meta("table", "extra request headers"))
    token: str = field(default="", metadata=meta("str", "sent as Authorization: Bearer <token>"))
    username: str = field(default="", metadata=meta("str", "HTTP basic auth user"))
    password: str = field(default="", metadata=meta("str", "HTTP basic auth password"))
    conditional: bool = field(default=True, metadata=meta("bool", "send If-None-Match / If-Modified-Since"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvDirOptions(DeviceOptions):
    """Options of a source with `transport = "csv_dir"`: files a legacy system drops into a folder."""

    path: Path = field(metadata=meta("path", "the folder to watch"))
    pattern: str = field(default="*.csv", metadata=meta("str", "which files to take (glob)"))
    settle: float = field(default=5.0, metadata=meta("duration", "a file is read once unchanged for this long"))
    scan_interval: float = field(
        default=2.0, metadata=meta("duration", "how often the folder is listed", positive=True)
    )
    done_dir: str = field(default="done", metadata=meta("str", "taken files are moved here (under path)"))
    failed_dir: str = field(default="failed", metadata=meta("str", "refused files are moved here (under path)"))
    max_file_size: int = field(
        default=4 * 1024**2,
        metadata=meta("size", "a larger file is refused unread (decoding takes ~40x its size in memory)", min=1024),
    )
    max_line: int = field(
        default=64 * 1024, metadata=meta("size", "a file with a longer line is refused, read no further", min=256)
    )


TransportOptions = HttpPushOptions | SerialOptions | ModbusSourceOptions | MqttOptions | HttpPollOptions | CsvDirOptions
# Transport name -> its options dataclass. Read-only: a new transport is one more entry.
TRANSPORT_OPTIONS: Mapping[str, type[Any]] = MappingProxyType(
    {
        "http_push": HttpPushOptions,
        "serial": SerialOptions,
        "modbus": ModbusSourceOptions,
        "mqtt": MqttOptions,
        "http_poll": HttpPollOptions,
        "csv_dir": CsvDirOptions,
    }
)


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One `[[sources]]` entry: a device (or POS) the agent reads, the transport and the adapter profile."""

    name: str = field(metadata=meta("name", "the sensor (or terminal) name its records carry; unique"))
    transport: str = field(metadata=meta("name", "how readings arrive: " + ", ".join(TRANSPORT_OPTIONS)))
    adapter: str = field(metadata=meta("name", "the profile in firmware-adapters/ (or adapter_dirs) that decodes it"))
    timezone: str = field(default="", metadata=meta("zone", "this device's zone when it differs from [agent].timezone"))
    enabled: bool = field(default=True, metadata=meta("bool", "false keeps the entry but does not start it"))
    # The transport's own keys, read with its TRANSPORT_OPTIONS dataclass.
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

# Given the adapter folders, the names of every loadable profile; raises ConfigError for a bad profile.
AdapterNames = Callable[[tuple[Path, ...]], Collection[str]]


def load_config(path: str | Path, *, adapters: AdapterNames | None = None) -> AgentConfig:
    """Read and check `agent.toml`; raises ConfigError listing every problem.

    With `adapters`, each source's adapter is also checked against the profiles it finds,
    so one run reports config and profile problems together.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("", "file not found; pass --config with the agent.toml path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read the file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"not valid TOML: {exc}")]) from None
    return parse_config(data, where=str(path), base=path.parent, adapters=adapters, path=path)


def parse_config(
    data: Mapping[str, Any],
    *,
    where: str = "agent.toml",
    base: Path | None = None,
    adapters: AdapterNames | None = None,
    path: Path | None = None,
) -> AgentConfig:
    """Build an AgentConfig from parsed TOML; relative paths resolve against `base`."""
    reader = TableReader(base or Path.cwd())
    sections: dict[str, Any] = {}
    for key in data:
        if key not in SECTIONS and key != "sources":
            reader.unknown(key, "", [*SECTIONS, "sources"])
    for name, cls in SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            reader.add(name, f"must be a table ([{name}]), got {_tname(table)}")
            table = {}
        sections[name] = reader.build(cls, table, name)
    sources = _sources(reader, data.get("sources", []))
    if adapters is not None:
        _check_adapters(reader, data, adapters)
    if reader.problems:
        raise ConfigError(where, reader.problems)
    return AgentConfig(**sections, sources=tuple(s for s in sources if s is not None), path=path)


def _check_adapters(reader: TableReader, data: Mapping[str, Any], adapters: AdapterNames) -> None:
    """Each source's adapter must name a loadable profile; bad profiles are problems of this file too."""
    agent = data.get("agent")
    raw_dirs = agent.get("adapter_dirs", []) if isinstance(agent, dict) else []
    try:
        dirs = _paths(reader, raw_dirs, {}, None)
    except ValueError:
        return  # already reported as agent.adapter_dirs
    try:
        known = adapters(dirs)
    except ConfigError as exc:
        reader.problems.extend(exc.problems)  # each already names its profile file
        return
    raw = data.get("sources")
    for index, table in enumerate(raw if isinstance(raw, list) else []):
        adapter = table.get("adapter") if isinstance(table, dict) else None
        if isinstance(adapter, str) and adapter not in known:
            name = f" (source {table['name']!r})" if isinstance(table.get("name"), str) else ""
            reader.add(
                f"sources[{index}].adapter",
                f"no adapter profile named {adapter!r}{name}; known: {', '.join(sorted(known)) or 'none'}"
                + _suggest(adapter, known),
            )


def _sources(reader: TableReader, raw: Any) -> list[SourceConfig | None]:
    if not isinstance(raw, list):
        reader.add("sources", f"must be an array of tables ([[sources]]), got {_tname(raw)}")
        return []
    out: list[SourceConfig | None] = []
    names: dict[str, int] = {}
    routes: dict[str, int] = {}
    ports: dict[str, tuple[int, str]] = {}
    for index, table in enumerate(raw):
        where = f"sources[{index}]"
        if not isinstance(table, dict):
            reader.add(where, f"must be a table, got {_tname(table)}")
            out.append(None)
            continue
        label = f" (source {table['name']!r})" if isinstance(table.get("name"), str) else ""
        transport = table.get("transport")
        options_cls = TRANSPORT_OPTIONS.get(transport) if isinstance(transport, str) else None
        common = {f.name for f in fields(SourceConfig)} - {"options"}
        own = {k: v for k, v in table.items() if k in common}
        rest = {k: v for k, v in table.items() if k not in common}
        if isinstance(transport, str) and options_cls is None:
            reader.add(
                f"{where}.transport",
                f"unknown transport {transport!r}{label}; allowed: {', '.join(TRANSPORT_OPTIONS)}"
                + _suggest(transport, TRANSPORT_OPTIONS),
            )
        before = len(reader.problems)
        source = reader.build(SourceConfig, own, where, label=label)
        options = reader.build(options_cls, rest, where, label=label) if options_cls is not None else None
        if source is None or options is None or len(reader.problems) > before:
            out.append(None)
            continue
        if source.name in names:
            reader.add(
                f"{where}.name",
                f"{source.name!r} is already the name of sources[{names[source.name]}]; names must be unique",
            )
        names.setdefault(source.name, index)
        if isinstance(options, HttpPushOptions):
            if options.path in routes:
                reader.add(
                    f"{where}.path", f"{options.path!r}{label} is already used by sources[{routes[options.path]}]"
                )
            routes.setdefault(options.path, index)
        port = options.port if isinstance(options, SerialOptions) else ""
        if isinstance(options, ModbusSourceOptions):
            port = options.serial_port if options.mode == "rtu" else ""
            if options.mode == "rtu" and not port:
                reader.add(f"{where}.serial_port", f"required{label} with mode = 'rtu'")
            if options.mode == "tcp" and not options.host:
                reader.add(f"{where}.host", f"required{label} with mode = 'tcp'")
        if port:
            other = ports.get(port)
            if other is not None and (source.transport == "serial" or other[1] == "serial"):
                reader.add(
                    f"{where}.{'port' if source.transport == 'serial' else 'serial_port'}",
                    f"{port!r}{label} is already used by sources[{other[0]}]; one serial port serves one "
                    "serial device (or one Modbus RTU bus shared by modbus sources)",
                )
            ports.setdefault(port, (index, source.transport))
        out.append(_replace_options(source, options))
    return out


def _replace_options(source: SourceConfig, options: Any) -> SourceConfig:
    return replace(source, options=options)


class TableReader:
    """Builds dataclasses declared with `opt`/`req` from TOML tables, collecting problems instead of stopping.

    Adapter profiles (decode/profile_load.py) use it too, so both files report problems the same way.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[Problem] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def unknown(self, key: str, where: str, allowed: Collection[str], label: str = "") -> None:
        full = f"{where}.{key}" if where else key
        self.add(full, f"unknown key{label}; allowed here: {', '.join(allowed)}" + _suggest(key, allowed))

    def build(self, cls: type[Any], table: Mapping[str, Any], where: str, label: str = "") -> Any:
        """An instance of `cls` from `table`, or None when a value was wrong (the problem is recorded)."""
        hints = typing.get_type_hints(cls)
        known = [f.name for f in fields(cls) if f.metadata.get("kind") != "options"]
        for key in table:
            if key not in known:
                self.unknown(key, where, known, label)
        values: dict[str, Any] = {}
        ok = True
        for f in fields(cls):
            kind = str(f.metadata.get("kind"))
            if kind == "options":
                continue
            key = f"{where}.{f.name}"
            if f.name not in table:
                if f.default is MISSING and f.default_factory is MISSING:
                    self.add(key, f"required{label}: {f.metadata['doc']}")
                    ok = False
                continue
            try:
                values[f.name] = self._convert(kind, table[f.name], f.metadata, hints[f.name])
            except ValueError as exc:
                self.add(key, f"{exc}{label}")
                ok = False
        return cls(**values) if ok else None

    def _convert(self, kind: str, value: Any, rules: Mapping[str, Any], hint: Any) -> Any:
        converter = _CONVERTERS[kind]
        result = converter(self, value, rules, hint)
        if "min" in rules and result < rules["min"]:
            raise ValueError(f"must be at least {rules['min']}, got {value!r}")
        if "max" in rules and result > rules["max"]:
            raise ValueError(f"must be at most {rules['max']}, got {value!r}")
        if rules.get("positive") and result <= 0:
            raise ValueError(f"must be more than zero, got {value!r}")
        return result


def _str(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_tname(value)} {value!r}")
    return value


def _name(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    problem = name_problem(text)  # a source's name is its records' sensor name: the protocol's rule
    if problem is not None:
        raise ValueError(f"{problem}, got {value!r}")
    return text


def _int(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"must be a whole number, got {_tname(value)} {value!r}")
    return value


def _bool(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _duration(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            str(exc) if isinstance(exc, ValueError) else f"must be a duration such as 30s, got {value!r}"
        ) from None


def _size(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> int:
    try:
        return parse_size(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            str(exc) if isinstance(exc, ValueError) else f"must be a size such as 1MiB, got {value!r}"
        ) from None


def _path(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> Path:
    text = _str(r, value, rules, hint)
    if not text:
        raise ValueError("must not be empty")
    path = Path(text).expanduser()
    return path if path.is_absolute() else r.base / path


def _paths(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise ValueError(f'must be a list of folders such as ["/etc/footfall/adapters"], got {_tname(value)}')
    return tuple(_path(r, item, rules, hint) for item in value)


def _params(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value.values()
    ):
        raise ValueError(f'must be a table of the adapter\'s settings such as {{ location_id = "L1" }}, got {value!r}')
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _choice(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    allowed = typing.get_args(hint)
    text = _str(r, value, rules, hint)
    if text not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}" + _suggest(text, allowed))
    return text


def _zone(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown IANA time zone {text!r}; use a name such as Europe/Paris or America/New_York"
            ) from None
    return text


def _url(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http:// or https:// URL such as https://collector.example.com, got {value!r}")
    return text.rstrip("/")


def _listen(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port such as 127.0.0.1:8088 or 0.0.0.0:8088, got {value!r}")
    return text


def _optional_listen(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    return _listen(r, value, rules, hint) if value != "" else ""


def _route(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if not text.startswith("/") or any(c in text for c in "?#{} ") or len(text) > 200:
        raise ValueError(f"must be a URL path starting with / such as /push/entrance, got {value!r}")
    return text


def _table_value(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"must be a table such as {{ key = value }}, got {_tname(value)}")
    return MappingProxyType(dict(value))


def _strs(_: TableReader, value: Any, __: Mapping[str, Any], ___: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f'must be a non-empty list of strings such as ["a/+/b"], got {value!r}')
    return tuple(value)


def _date(r: TableReader, value: Any, rules: Mapping[str, Any], hint: Any) -> str:
    text = _str(r, value, rules, hint)
    if text:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"must be a date such as 2026-11-01 or a time such as 2026-11-01T06:00Z, got {value!r}"
            ) from None
    return text


def date_ms(text: str) -> int:
    """A `date` value as Unix milliseconds (UTC when it has no offset)."""
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


_CONVERTERS: dict[str, Callable[[TableReader, Any, Mapping[str, Any], Any], Any]] = {
    "table": _table_value,
    "strs": _strs,
    "str": _str,
    "name": _name,
    "int": _int,
    "bool": _bool,
    "duration": _duration,
    "size": _size,
    "path": _path,
    "paths": _paths,
    "choice": _choice,
    "params": _params,
    "zone": _zone,
    "url": _url,
    "listen": _listen,
    "optional_listen": _optional_listen,
    "route": _route,
    "date": _date,
}


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _tname(value: Any) -> str:
    return {
        dict: "a table",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` -> (host, port); IPv6 hosts may be written in brackets."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)
