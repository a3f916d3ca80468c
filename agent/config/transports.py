"""The transport registry: each transport's name, the options its sources take, and the class that runs them.

A `[[sources]]` entry names its transport (`transport = "serial"`); the registry gives the
dataclass its own keys are read with (config/load.py) and the `Source` class that runs every
source of that transport (agent/pipeline.py). A new transport is one module in agent/sources/,
one options dataclass here and one entry in `transports()`.

Transport classes are imported only when a source needs them: a gateway with HTTP counters
only then never loads pyserial, pymodbus and paho-mqtt (about 5 MiB of resident memory on a
box that runs for months). The options classes here import none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from footfall.agent.config.reader import meta

if TYPE_CHECKING:
    from footfall.agent.config.sections import AgentConfig
    from footfall.agent.sources.base import Intake, Source, TransportFactory


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


@dataclass(frozen=True, slots=True)
class Transport:
    """One registered transport: its sources' options class, and where the class that runs them is."""

    options: type[Any]
    module: str
    name: str

    def load(self) -> TransportFactory:
        """The transport's class, imported now (with the libraries it needs)."""
        factory: TransportFactory = getattr(importlib.import_module(self.module), self.name)
        return factory

    def from_config(self, config: AgentConfig, intakes: Sequence[Intake], /) -> Source:
        """Import the transport, then build it for these sources."""
        return self.load().from_config(config, intakes)


def transports() -> dict[str, Transport]:
    """A fresh registry: transport name -> its options and its class (the pipeline owns its copy)."""
    return {
        "http_push": Transport(HttpPushOptions, "footfall.agent.sources.http_push", "HttpPushServer"),
        "serial": Transport(SerialOptions, "footfall.agent.sources.serial", "SerialSource"),
        "modbus": Transport(ModbusSourceOptions, "footfall.agent.sources.modbus", "ModbusSource"),
        "mqtt": Transport(MqttOptions, "footfall.agent.sources.mqtt", "MqttSource"),
        "http_poll": Transport(HttpPollOptions, "footfall.agent.sources.http_poll", "HttpPollSource"),
        "csv_dir": Transport(CsvDirOptions, "footfall.agent.sources.csv_dir", "CsvDirSource"),
    }
