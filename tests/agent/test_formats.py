"""The profile features the vendor adapters need, one at a time: time rules, XML and form bodies, params, signatures.

Each test builds a small profile from a dict (as TOML would give it) and runs bodies through the
real extraction; the shipped profiles' golden cases (test_adapter_cases.py) use them together.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, extract, extract_frame
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile import ProfileError
from footfall.agent.decode.profile_load import load_profiles, parse_profile
from footfall.agent.decode.readings import CumulativeCount
from footfall.agent.decode.signature import SignatureError, verify
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from footfall.protocol.records import Count, Transaction

PARIS = ZoneInfo("Europe/Paris")
EXTRACTORS = default_extractors()


def counter(time: dict[str, Any] | None = None, fields: dict[str, Any] | None = None, **head: Any) -> Any:
    data = {
        "profile": {"name": "t", "format": "json", "reading": "count", **head},
        "time": time or {},
        "fields": fields or {"start": {"path": "start"}, "end": {"path": "end"},
                             "entries": {"path": "in"}, "exits": {"path": "out"}},
    }
    return parse_profile(data, where="t", extractors=EXTRACTORS)


def starts(profile: Any, *bodies: dict[str, Any], zone: ZoneInfo | None = PARIS) -> list[int]:
    readings = extract(profile, EXTRACTORS[profile.format], json.dumps(list(bodies)).encode(), DecodeContext("d", zone))
    return [r.start_ms for r in readings if isinstance(r, Count)]


def period(start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"start": start, "end": end, "in": 1, "out": 0, **extra}


UTC_0030, UTC_0130 = 1792888200000, 1792891800000  # 2026-10-25 00:30Z and 01:30Z: both 02:30 in Paris


@pytest.mark.parametrize(
    ("rule", "expected"), [("earlier", UTC_0030), ("later", UTC_0130)]
)
def test_the_repeated_hour_without_a_dst_flag_follows_the_ambiguous_rule(rule: str, expected: int) -> None:
    profile = counter({"naive": "site", "ambiguous": rule})
    assert starts(profile, period("2026-10-25T02:30:00", "2026-10-25T02:45:00")) == [expected]


def test_the_repeated_hour_can_be_refused() -> None:
    profile = counter({"naive": "site", "ambiguous": "reject"})
    with pytest.raises(DecodeError, match="happened twice in Europe/Paris"):
        starts(profile, period("2026-10-25T02:30:00", "2026-10-25T02:45:00"))


def test_a_dst_flag_tells_the_two_occurrences_apart() -> None:
    profile = counter({"naive": "site", "dst": "dst", "ambiguous": "reject"})
    summer = period("2026-10-25T02:30:00", "2026-10-25T02:45:00", dst=1)
    winter = period("2026-10-25T02:30:00", "2026-10-25T02:45:00", dst="false")
    assert starts(profile, summer, winter) == [UTC_0030, UTC_0130]


def test_a_time_in_the_skipped_hour_reads_with_the_offset_before_the_change() -> None:
    gap = period("2026-03-29T02:30:00", "2026-03-29T02:45:00")
    assert starts(counter({"naive": "site"}), gap) == [1774747800000]  # 01:30Z: +01:00, the clock not yet moved
    with pytest.raises(DecodeError, match="does not exist in Europe/Paris"):
        starts(counter({"naive": "site", "ambiguous": "reject"}), gap)


def test_naive_utc_and_a_fixed_device_offset_with_dst_hours() -> None:
    assert starts(counter({"naive": "utc"}), period("2026-03-08 10:00:00", "2026-03-08 10:15:00")) == [1772964000000]
    profile = counter({"naive": "offset", "offset": "/tz", "dst": "/dst"})
    body = {"tz": "+05:30", "dst": 0, "items": [period("2026-03-08T15:30:00", "2026-03-08T15:45:00")]}
    readings = extract(
        parse_profile(
            {**profile.data, "json": {"items": ["items"]}}, where="t", extractors=EXTRACTORS
        ),
        EXTRACTORS["json"], json.dumps(body).encode(), DecodeContext("d"),
    )
    assert [r.start_ms for r in readings if isinstance(r, Count)] == [1772964000000]


def test_a_strptime_pattern_reads_the_old_axis_live_sum() -> None:
    profile = counter(
        {"format": "%Y%m%d%H%M%S", "naive": "site"},
        {"at": {"path": "timestamp"}, "entries": {"path": "in"}, "exits": {"path": "out"}},
        counter="daily_cumulative",
    )
    body = {"serial": "ACCC8E", "name": "door", "timestamp": "20260308110500", "in": 40, "out": 31}
    (reading,) = extract(profile, EXTRACTORS["json"], json.dumps(body).encode(), DecodeContext("door", PARIS))
    assert reading == CumulativeCount("door", "main", 1772964300000, 40, 31, day="2026-03-08",
                                      day_start_ms=1772924400000)


def test_xml_paths_attributes_filters_parents_and_namespaces() -> None:
    data = {
        "profile": {"name": "x", "format": "xml", "reading": "count"},
        "time": {"format": "epoch_s"},
        "xml": {"root": "Data", "items": ["Site/Door"]},
        "where": {"@kind": "line"},
        "fields": {
            "line": {"path": "@name"},
            "start": {"path": "/Period/@from"},
            "end": {"path": "/Period/@to"},
            "entries": {"path": "Value[@dir=in]"},
            "exits": {"path": "Value[@dir=out]"},
        },
    }
    profile = parse_profile(data, where="x", extractors=EXTRACTORS)
    body = b"""<?xml version="1.0"?>
<Data xmlns="urn:example"><Period from="1772964000" to="1772964900"/>
  <Site><Door name="north" kind="line"><Value dir="in">4</Value><Value dir="out">2</Value></Door>
        <Door name="shop" kind="zone"><Value dir="in">9</Value><Value dir="out">9</Value></Door></Site></Data>"""
    result = extract_frame(profile, EXTRACTORS["xml"], body, DecodeContext("d"))
    assert result.readings == [Count("d", "north", 1772964000000, 1772964900000, 4, 2)]
    assert result.skipped == 1


def test_a_form_body_with_json_fields() -> None:
    profile = load_profiles()["lightspeed-webhook"]
    payload = json.dumps({"id": "s1", "outlet_id": "o", "register_id": "r", "sale_date": "2026-03-08 10:00:00",
                          "status": "CLOSED", "total_price": "1.00000", "total_tax": "0.20000"})
    body = urlencode({"type": "sale.update", "payload": payload}).encode()
    source = SourceConfig("till", "http_push", "lightspeed-webhook", options=HttpPushOptions("/p", secret="k"),
                          params={"currency": "nzd"})
    intake = SourceIntake(source, profile, EXTRACTORS["form"], None)  # type: ignore[arg-type]
    signature = hmac.new(b"k", body, hashlib.sha256).digest()
    # Lightspeed names no encoding: base64 is accepted as well as hex, and so is a digest of the payload field.
    meta = {"header:x-signature": f"signature={base64.b64encode(signature).decode()},algorithm=HMAC-SHA256"}
    assert intake.decode(Frame("till", body, 0, meta)) == [Transaction("r", "s1", 1772964000000, "sale", 120, "NZD")]
    over_payload = hmac.new(b"k", payload.encode(), hashlib.sha256).hexdigest()
    assert intake.decode(Frame("till", body, 0, {"header:x-signature": f"signature={over_payload}"}))
    with pytest.raises(SignatureError, match="X-Signature does not match"):
        intake.decode(Frame("till", body + b"&x=1", 0, meta))


def test_the_generic_hmac_scheme_and_its_refusals() -> None:
    section = parse_profile(
        {"profile": {"name": "g", "format": "json", "reading": "transaction"},
         "signature": {"scheme": "hmac-sha256", "header": "X-Hub-Signature-256"},
         "fields": {"txn_id": {"path": "id"}, "at": {"path": "at"}, "amount": {"path": "a"},
                    "currency": {"value": "EUR"}}},
        where="g", extractors=EXTRACTORS,
    ).signature
    body = b'{"id": 1}'
    digest = hmac.new(b"s3", body, hashlib.sha256).hexdigest()
    verify(section, body, {"x-hub-signature-256": f"sha256={digest}"}, "s3")
    with pytest.raises(SignatureError, match="does not match"):
        verify(section, body, {"x-hub-signature-256": f"sha256={digest}"}, "other")
    with pytest.raises(SignatureError, match="has no X-Hub-Signature-256 header"):
        verify(section, body, {}, "s3")
    with pytest.raises(SignatureError, match="no secret"):
        verify(section, body, {"x-hub-signature-256": digest}, "")


def test_params_are_checked_and_bound_per_source() -> None:
    profile = load_profiles()["irisys-vector"]
    bare = SourceConfig("door", "http_push", "irisys-vector", options=HttpPushOptions("/p"))
    with pytest.raises(ConfigError) as caught:
        SourceIntake(bare, profile, EXTRACTORS["json"], None)  # type: ignore[arg-type]
    assert "needs params.in_register" in str(caught.value) and "needs params.out_register" in str(caught.value)
    wrong = SourceConfig("door", "http_push", "irisys-vector", options=HttpPushOptions("/p"),
                         params={"in_register": "A", "out_register": "B", "colour": "red"})
    with pytest.raises(ConfigError, match="unknown param 'colour'"):
        SourceIntake(wrong, profile, EXTRACTORS["json"], None)  # type: ignore[arg-type]
    good = SourceConfig("door", "http_push", "irisys-vector", options=HttpPushOptions("/p"),
                        params={"in_register": "Door A]", "out_register": "B"})
    with pytest.raises(ConfigError, match="params of adapter irisys-vector"):
        SourceIntake(good, profile, EXTRACTORS["json"], None)  # type: ignore[arg-type]


def test_a_profile_naming_an_undeclared_param_is_refused() -> None:
    data = {"profile": {"name": "p", "format": "json", "reading": "transaction"},
            "where": {"shop": "${shop_id}"},
            "fields": {"txn_id": {"path": "id"}, "at": {"path": "at"}, "amount": {"path": "a"},
                       "currency": {"value": "EUR"}}}
    with pytest.raises(ProfileError, match=r"where.shop: \$\{shop_id\} is not a declared param"):
        parse_profile(data, where="p", extractors=EXTRACTORS)


def test_config_check_names_a_source_without_its_secret(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[[sources]]\nname = "square"\ntransport = "http_push"\nadapter = "square-webhook"\n'
                      'path = "/push/square"\n')
    done = subprocess.run([sys.executable, "-m", "footfall.agent", "config", "check", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "sources[0]: (source 'square') adapter square-webhook checks square webhook signatures" in done.stdout


def test_adapters_lists_every_profile_with_what_it_needs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "footfall.agent", "adapters", "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    listed = {item["name"]: item for item in json.loads(done.stdout)}
    assert set(listed) == set(load_profiles())
    assert listed["hikvision-isapi-realtime"]["counting"] == "cumulative since local midnight; filed at the push"
    assert listed["irisys-vector"]["counting"] == "cumulative since power-on or reset, wraps at 4294967296"
    assert listed["irisys-vector"]["params"]["in_register"]["required"] is True
    assert listed["square-webhook"]["needs"] == ["params.location_id (optional)", "secret (square signature)"]
    assert listed["brickstream-xml"]["time"].startswith("iso8601: local time plus the device's own offset")
    human = subprocess.run([sys.executable, "-m", "footfall.agent", "adapters"],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "lightspeed-webhook  (form, transaction, transport http_push)" in human


def test_the_profile_reference_documents_every_key() -> None:
    from dataclasses import fields as dataclass_fields

    from footfall.agent.decode import profile as profiles
    from footfall.agent.decode.profile_fields import FIELD_KEYS
    from footfall.agent.decode.profile_load import shipped_root

    reference = (Path(str(shipped_root())) / "README.md").read_text()
    sections = {
        "profile": profiles.ProfileSection,
        "time": profiles.TimeSection,
        "dedupe": profiles.DedupeSection,
        "signature": profiles.SignatureSection,
    }
    for section, cls in sections.items():
        assert f"[{section}]" in reference, section
        for f in dataclass_fields(cls):
            assert f"\n{f.name} = " in reference, f"[{section}] {f.name} is not in firmware-adapters/README.md"
    for key in ("doc", "default"):
        assert f"\n{key} = " in reference
    for key in FIELD_KEYS:
        assert f"`{key} = " in reference or f"{{ {key} = " in reference, f"field option {key} is undocumented"
    for name in EXTRACTORS:
        assert f"`{name}`" in reference, f"format {name} is undocumented"
