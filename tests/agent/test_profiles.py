"""Adapter profiles: loading errors name the file and key; JSON extraction; the registries are plain dicts."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import AgentConfig, SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, extract
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.formats.binary import BinaryExtractor
from footfall.agent.decode.formats.csv import CsvExtractor
from footfall.agent.decode.formats.escpos import EscposExtractor
from footfall.agent.decode.formats.form import FormExtractor
from footfall.agent.decode.formats.json import JsonExtractor
from footfall.agent.decode.formats.milesight import MilesightExtractor
from footfall.agent.decode.formats.modbus import ModbusExtractor
from footfall.agent.decode.formats.tree import TreePath
from footfall.agent.decode.formats.xml import XmlExtractor
from footfall.agent.decode.profile import ProfileError
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.pipeline import Pipeline
from footfall.agent.sources.base import Frame, FrameRefused
from footfall.protocol.records import Count, SensorEvent, Transaction


def write_profile(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.toml").write_text(text)
    return folder / "profile.toml"


def test_the_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert profiles["generic-json-counter"].shape == "count/interval"
    assert profiles["generic-json-pos"].shape == "transaction"


def test_every_problem_of_a_profile_is_named_with_file_and_key(tmp_path: Path) -> None:
    path = write_profile(
        tmp_path,
        "acme-door",
        """
[profile]
name = "acme-dor"
format = "json"
reading = "count"
modulus = 65536
delta_at = "end"
colour = "red"
[time]
naive = "sometimes"
[json]
items = ["data..x"]
[xml]
root = "Metrics"
[fields]
start = { path = "from", decimals = 2 }
end = { path = "to", value = 3 }
entries = { path = "in", units = "people" }
temperature = { path = "t" }
""",
    )
    with pytest.raises(ProfileError) as caught:
        load_profiles([tmp_path])
    problems = [str(p) for p in caught.value.problems]
    joined = "\n".join(problems)
    for expected in [
        "profile.name: 'acme-dor' must equal the folder's name 'acme-door'",
        "profile.colour: unknown key",
        "profile.modulus: only a cumulative counter wraps",
        "profile.delta_at: only a cumulative counter's deltas have a place to be filed",
        "time.naive: must be one of reject, site",
        "json.items[0]: cannot read path 'data..x'",
        "xml: a [xml] section belongs to format = 'xml' profiles",
        "fields.temperature: unknown key for a count/interval profile",
        "fields.start.decimals: only amount takes decimals",
        "fields.end: needs exactly one of path (where the frame has it) or value (a constant)",
        "fields.entries.units: unknown key",
        "fields.exits: required for a count/interval profile",
    ]:
        assert expected in joined, f"missing {expected!r} in:\n{joined}"
    assert all(p.startswith(str(path)) for p in problems), "each problem names its file"


def test_a_profile_in_adapter_dirs_replaces_a_shipped_one(tmp_path: Path) -> None:
    shipped = Path(load_profiles()["generic-json-pos"].source).read_text()
    write_profile(tmp_path, "generic-json-pos", shipped.replace('window = "7d"', 'window = "1d"'))
    profiles = load_profiles([tmp_path])
    assert profiles["generic-json-pos"].dedupe.window == 86400
    assert profiles["generic-json-pos"].source.startswith(str(tmp_path))


def test_the_extractor_registry_maps_each_format_to_its_class() -> None:
    extractors = default_extractors()
    formats = {
        "json": JsonExtractor,
        "form": FormExtractor,
        "xml": XmlExtractor,
        "binary": BinaryExtractor,
        "escpos": EscposExtractor,
        "modbus": ModbusExtractor,
        "csv": CsvExtractor,
        "milesight": MilesightExtractor,
    }
    assert {name: type(e) for name, e in extractors.items()} == formats
    assert all(e.name == name for name, e in extractors.items())
    assert extractors is not default_extractors(), "a fresh dict each time: no shared global"
    assert {name: type(e) for name, e in Pipeline(AgentConfig()).extractors.items()} == formats


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", (0, ())),
        ("counts", (0, (("key", "counts"),))),
        ("$.a.b[2]", (0, (("key", "a"), ("key", "b"), ("index", 2)))),
        ('["sensor-time"].time', (0, (("key", "sensor-time"), ("key", "time")))),
        ("content.element[*].measurement[*]", (0, (("key", "content"), ("key", "element"), ("all",),
                                                    ("key", "measurement"), ("all",)))),
        ("../../element-name", (2, (("key", "element-name"),))),
        ("/sensor-time.timezone", (-1, (("key", "sensor-time"), ("key", "timezone")))),
        ("value[label=fw].value", (0, (("key", "value"), ("match", "label", "fw"), ("key", "value")))),
    ],
)
def test_json_paths(path: str, steps: tuple[int, tuple[object, ...]]) -> None:
    assert JsonExtractor().compile_path(path) == TreePath(path, *steps)


def test_every_bad_field_of_a_frame_is_named() -> None:
    profile = load_profiles()["generic-json-counter"]
    body = {"counts": [{"start": "2026-03-08T10:00:00Z", "end": "soon", "in": "3", "out": 1}, {"in": 1, "line": ""}]}
    with pytest.raises(DecodeError) as caught:
        extract(profile, JsonExtractor(), json.dumps(body).encode(), DecodeContext("door"))
    message = str(caught.value)
    assert "counts[0].end: must be an ISO 8601 time" in message
    assert 'counts[0].in: must be a whole number >= 0, got "3"' in message
    assert "counts[1].start: missing" in message
    assert "(and 1 more)" in message


CUSTOM = """
[profile]
name = "{name}"
format = "json"
reading = "{reading}"
{extra}
[time]
naive = "site"
[fields]
{fields}
"""


def test_local_times_without_offset_in_the_site_zone(tmp_path: Path) -> None:
    write_profile(
        tmp_path,
        "local-pos",
        CUSTOM.format(
            name="local-pos",
            reading="transaction",
            extra="",
            fields='txn_id = { path = "id" }\nat = { path = "at" }\namount = { path = "total", decimals = 2 }\n'
            'currency = { value = "EUR" }\nkind = { path = "type", map = { SALE = "sale", RETURN = "refund" } }',
        ),
    )
    profile = load_profiles([tmp_path])["local-pos"]
    ctx = DecodeContext("till", ZoneInfo("Europe/Paris"))
    body = [
        {"id": 7, "at": "2026-03-08T10:00:00", "total": "12.50", "type": "sale"},
        # The repeated hour when summer time ends reads as its first occurrence (still +02:00).
        {"id": 8, "at": "2026-10-25T02:30:00", "total": 3, "type": "Return"},
    ]
    profile_items = JsonExtractor()
    readings = extract(profile, profile_items, json.dumps(body).encode(), ctx)
    assert readings == [
        Transaction("till", "7", 1772960400000, "sale", 1250, "EUR"),
        Transaction("till", "8", 1792888200000, "refund", 300, "EUR"),
    ]
    with pytest.raises(DecodeError, match=r"\[0\].total: must be >= 0 with at most 2 decimals"):
        extract(
            profile, profile_items, b'[{"id": 9, "at": "2026-03-08T10:00:00", "total": "1.005", "type": "sale"}]', ctx
        )
    with pytest.raises(DecodeError, match=r"\[0\].type: 'layby' is not one of"):
        extract(profile, profile_items, b'[{"id": 9, "at": "2026-03-08T10:00:00", "total": 1, "type": "layby"}]', ctx)


async def test_a_cumulative_profile_end_to_end_through_the_intake(tmp_path: Path) -> None:
    write_profile(
        tmp_path,
        "totals",
        CUSTOM.format(
            name="totals",
            reading="count",
            extra='counter = "cumulative"\nmodulus = 65536',
            fields='at = { path = "ts" }\nentries = { path = "total_in" }\nexits = { path = "total_out" }',
        ),
    )
    profile = load_profiles([tmp_path])["totals"]
    source = SourceConfig("door", "http_push", "totals", options=HttpPushOptions("/p"))
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0) as buffer:
        intake = SourceIntake(source, profile, JsonExtractor(), buffer, zone=ZoneInfo("UTC"))
        for ts, total_in, total_out in [("10:00", 65530, 7), ("10:15", 20, 9), ("10:15", 20, 9), ("10:30", 25, 9)]:
            body = {"ts": f"2026-03-08T{ts}:00", "total_in": total_in, "total_out": total_out}
            await intake(Frame("door", json.dumps(body).encode(), 0))
        with pytest.raises(FrameRefused, match="not below the counter's modulus 65536"):
            await intake(Frame("door", b'{"ts": "2026-03-08T10:45:00", "total_in": 70000, "total_out": 9}', 0))
        records = await buffer.records()
    assert [(type(r).__name__, getattr(r, "entries", None), getattr(r, "kind", None)) for r in records] == [
        ("SensorEvent", None, "counter_wrap"),
        ("Count", 26, None),
        ("Count", 5, None),
    ]
    assert isinstance(records[0], SensorEvent) and isinstance(records[1], Count)
    assert intake.health.dropped == 1 and intake.health.errors == 1 and intake.health.state == "degraded"
