"""agent.toml: defaults, every problem reported at once with its full key, and CONFIG.md kept true."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from footfall.agent.config.load import load_config, parse_config
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import SECTIONS, AgentConfig, SourceConfig
from footfall.agent.config.transports import (
    CsvDirOptions,
    HttpPollOptions,
    HttpPushOptions,
    ModbusSourceOptions,
    MqttOptions,
    SerialOptions,
    transports,
)
from footfall.agent.decode.profile_load import load_profiles

CONFIG_MD = Path(__file__).resolve().parents[2] / "agent" / "CONFIG.md"
SOURCE = """
[[sources]]
name = "entrance"
transport = "http_push"
adapter = "generic-json-counter"
path = "/push/entrance"
"""


def _problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, adapters=load_profiles)
    return [str(p) for p in caught.value.problems]


def test_an_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("")
    config = load_config(tmp_path / "agent.toml")
    assert config.agent.state_dir == Path("/var/lib/footfall")
    assert config.buffer.max_size == 1024**3
    assert config.buffer.commit_interval == pytest.approx(1.0)
    assert config.upload.backoff_max == 300
    assert config.http_push.listen == "127.0.0.1:8088"
    assert config.sources == ()


def test_a_source_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('[agent]\nstate_dir = "state"\nadapter_dirs = ["mine"]\n' + SOURCE)
    (tmp_path / "mine").mkdir()
    config = load_config(tmp_path / "agent.toml", adapters=load_profiles)
    assert config.agent.state_dir == tmp_path / "state"
    assert config.agent.adapter_dirs == (tmp_path / "mine",)
    (source,) = config.sources
    assert source == SourceConfig(
        "entrance", "http_push", "generic-json-counter", options=HttpPushOptions("/push/entrance")
    )


def test_every_problem_is_reported_at_once_naming_its_key(tmp_path: Path) -> None:
    text = """
[agent]
log_level = "loud"
timezone = "Mars/Olympus"
colour = "blue"
[buffer]
max_size = "lots"
commit_interval = "-1s"
[upload]
max_records = 0
max_age = true
[http_push]
listen = "8088"
[collectr]
url = "x"
[[sources]]
name = "entrance"
transport = "http_push"
adapter = "generic-json-countr"
path = "/push/entrance"
[[sources]]
name = "entrance"
transport = "http_push"
adapter = "generic-json-pos"
path = "push"
[[sources]]
name = "door"
transport = "carrier-pigeon"
adapter = "generic-json-counter"
[[sources]]
transport = "http_push"
adapter = "generic-json-counter"
path = "/push/entrance"
"""
    problems = _problems(text, tmp_path)
    joined = "\n".join(problems)
    expected_keys = [
        "agent.log_level: must be one of debug, info, warning, error",
        "agent.timezone: unknown IANA time zone 'Mars/Olympus'",
        "agent.colour: unknown key",
        "buffer.max_size: expected a size",
        "buffer.commit_interval:",
        "upload.max_records: must be at least 1",
        "upload.max_age:",
        "http_push.listen: must be host:port",
        "collectr: unknown key; allowed here: agent, collector, buffer, upload, http_push, heartbeat, metrics, clock, "
        "sources",
        "(did you mean 'collector'?)",
        "sources[1].path: must be a URL path starting with /",
        "sources[2].transport: unknown transport 'carrier-pigeon' (source 'door'); allowed: http_push, serial, modbus",
        "sources[3].name: required",
        "sources[0].adapter: no adapter profile named 'generic-json-countr' (source 'entrance')",
    ]
    for key in expected_keys:
        assert key in joined, f"missing: {key}\n{joined}"
    assert "(did you mean 'generic-json-counter'?)" in joined


def test_duplicate_names_and_paths(tmp_path: Path) -> None:
    problems = _problems(SOURCE + SOURCE, tmp_path)
    assert any(p.startswith("sources[1].name: 'entrance' is already the name of sources[0]") for p in problems)
    assert any(
        p.startswith("sources[1].path: '/push/entrance' (source 'entrance') is already used by sources[0]")
        for p in problems
    )


def test_a_typo_in_a_transport_key_is_named(tmp_path: Path) -> None:
    problems = _problems(SOURCE.replace("path =", "pth ="), tmp_path)
    assert any(
        "sources[0].pth: unknown key (source 'entrance'); allowed here: path, token, secret, public_url "
        "(did you mean 'path'?)" in p
        for p in problems
    )
    assert any("sources[0].path: required (source 'entrance')" in p for p in problems)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "agent.toml")
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_a_broken_profile_in_adapter_dirs_is_reported_with_the_config(tmp_path: Path) -> None:
    extra = tmp_path / "adapters" / "broken"
    extra.mkdir(parents=True)
    (extra / "profile.toml").write_text('[profile]\nname = "broken"\nformat = "json"\nreading = "count"\n[fields]\n')
    problems = _problems('[agent]\nadapter_dirs = ["adapters"]\nlog_level = "x"\n' + SOURCE, tmp_path)
    assert any(p.startswith("agent.log_level") for p in problems)
    assert any("broken/profile.toml: fields.start: required for a count/interval profile" in p for p in problems)


def test_the_transport_registry_maps_each_name_to_its_options_and_its_class() -> None:
    from footfall.agent.pipeline import Pipeline
    from footfall.agent.sources.csv_dir import CsvDirSource
    from footfall.agent.sources.http_poll import HttpPollSource
    from footfall.agent.sources.http_push import HttpPushServer
    from footfall.agent.sources.modbus import ModbusSource
    from footfall.agent.sources.mqtt import MqttSource
    from footfall.agent.sources.serial import SerialSource

    registry = transports()
    assert {name: (t.options, t.load()) for name, t in registry.items()} == {
        "http_push": (HttpPushOptions, HttpPushServer),
        "serial": (SerialOptions, SerialSource),
        "modbus": (ModbusSourceOptions, ModbusSource),
        "mqtt": (MqttOptions, MqttSource),
        "http_poll": (HttpPollOptions, HttpPollSource),
        "csv_dir": (CsvDirOptions, CsvDirSource),
    }
    assert registry is not transports(), "a fresh dict each time: no shared global"
    assert Pipeline(AgentConfig()).transports == registry, "the pipeline runs what the config accepts"


def _documented() -> dict[str, dict[str, str]]:
    """CONFIG.md's tables: heading -> {key: default as written}."""
    tables: dict[str, dict[str, str]] = {}
    heading = ""
    for line in CONFIG_MD.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
            tables[heading] = {}
            continue
        row = re.match(r"^\| `([a-z_]+)` \| (.+?) \|", line)
        if row:
            tables[heading][row.group(1)] = row.group(2).strip().strip("`")
    return tables


def test_config_md_documents_every_key_with_its_true_default() -> None:
    tables = _documented()
    expected = {f"[{name}]": cls for name, cls in SECTIONS.items()}
    expected["[[sources]]"] = SourceConfig
    expected.update({f'transport = "{name}"': t.options for name, t in transports().items()})
    defaults: dict[str, dict[str, object]] = {}
    for heading, cls in expected.items():
        assert heading in tables, f"CONFIG.md has no section {heading}"
        keys = [f.name for f in fields(cls) if f.metadata.get("kind") != "options"]
        assert sorted(tables[heading]) == sorted(keys), f"CONFIG.md {heading} lists {sorted(tables[heading])}"
        for f in fields(cls):
            if f.name not in tables[heading]:
                continue
            written = tables[heading][f.name]
            if f.default is MISSING and f.default_factory is MISSING:
                assert written == "required", f"{heading} {f.name} is required in the code"
            elif heading.startswith("[") and not heading.startswith("[["):
                defaults.setdefault(heading.strip("[]"), {})[f.name] = tomllib.loads(f"v = {written}")["v"]
    parsed = parse_config(defaults)
    assert parsed == AgentConfig(**{name: cls() for name, cls in SECTIONS.items()}, sources=())
