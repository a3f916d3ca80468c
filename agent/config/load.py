"""`agent.toml` read and checked once at start: typed, frozen dataclasses, or every problem at once.

Each section is read by the `TableReader` (config/reader.py) into its dataclass
(config/sections.py); a source's own keys are read with the options class its transport
registers (config/transports.py). What spans entries is checked here: unique source names,
one http_push route per path, one serial port per serial device (or Modbus RTU bus), a Modbus
source's host or serial port for its mode, and, when asked, that every adapter names a
loadable profile. Every problem is collected and reported at once, each naming its full key
(`sources[2].adapter`), the source it belongs to and what is allowed, so a technician fixes
the file in one pass.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from footfall.agent.config.reader import ConfigError, Problem, TableReader, suggest, type_name
from footfall.agent.config.sections import SECTIONS, AgentConfig, SourceConfig
from footfall.agent.config.transports import HttpPushOptions, ModbusSourceOptions, SerialOptions, transports

DEFAULT_CONFIG_PATH = Path("/etc/footfall/agent.toml")

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
            reader.add(name, f"must be a table ([{name}]), got {type_name(table)}")
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
        dirs = reader.value("paths", raw_dirs)
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
                + suggest(adapter, known),
            )


def _sources(reader: TableReader, raw: Any) -> list[SourceConfig | None]:
    if not isinstance(raw, list):
        reader.add("sources", f"must be an array of tables ([[sources]]), got {type_name(raw)}")
        return []
    registry = transports()
    out: list[SourceConfig | None] = []
    names: dict[str, int] = {}
    routes: dict[str, int] = {}
    ports: dict[str, tuple[int, str]] = {}
    for index, table in enumerate(raw):
        where = f"sources[{index}]"
        if not isinstance(table, dict):
            reader.add(where, f"must be a table, got {type_name(table)}")
            out.append(None)
            continue
        label = f" (source {table['name']!r})" if isinstance(table.get("name"), str) else ""
        transport = table.get("transport")
        known = registry.get(transport) if isinstance(transport, str) else None
        options_cls = known.options if known is not None else None
        common = {f.name for f in fields(SourceConfig)} - {"options"}
        own = {k: v for k, v in table.items() if k in common}
        rest = {k: v for k, v in table.items() if k not in common}
        if isinstance(transport, str) and options_cls is None:
            reader.add(
                f"{where}.transport",
                f"unknown transport {transport!r}{label}; allowed: {', '.join(registry)}"
                + suggest(transport, registry),
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
        out.append(replace(source, options=options))
    return out
