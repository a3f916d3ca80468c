"""Every case of every shipped adapter, through the real decode path and a real buffer (one table-driven test).

A case is a folder `firmware-adapters/<adapter>/cases/<case>/` with the device's frames
(`input.json`, or `input-1.json`, `input-2.bin`, ... taken in order; any extension: a body, a
serial frame, a CSV file, a Modbus register frame) and `expected.json`: the answer to each
frame (`accepted`/`duplicates`/`records`, or an `error` substring, and optionally the frame's
`received_ms`, the agent's clock when it arrived), the records the buffer holds at the end (wire
maps without their seq), and optionally the source's `timezone` and `adapter_options`.

A cumulative counter re-sending a value makes a zero count, not a duplicate: such a case says
`"resend": true` and its expected records show that nothing was counted twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config import HttpPushOptions, SerialOptions, SourceConfig
from footfall.agent.decode.extract import DecodeError, default_extractors
from footfall.agent.decode.profile import load_profiles, shipped_root
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from footfall.protocol.records import to_wire

ROOT = Path(str(shipped_root()))
CASES = sorted(p for p in ROOT.glob("*/cases/*") if p.is_dir())


def test_every_adapter_has_its_readme_profile_and_cases() -> None:
    adapters = sorted(p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("__"))
    assert {a.name for a in adapters} >= {"generic-json-counter", "generic-json-pos"}
    for adapter in adapters:
        assert (adapter / "profile.toml").is_file(), adapter
        assert (adapter / "README.md").is_file(), adapter
        cases = [json.loads((c / "expected.json").read_text()) for c in (adapter / "cases").iterdir()]
        assert any("error" in f for case in cases for f in case["frames"]), (
            f"{adapter.name} has no malformed-input case"
        )
        assert any(f.get("duplicates") for case in cases for f in case["frames"]) or any(
            case.get("resend") for case in cases
        ), f"{adapter.name} has no resend case"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.parent.name}/{c.name}" for c in CASES])
async def test_adapter_case(case: Path, tmp_path: Path) -> None:
    adapter = case.parent.parent.name
    expected: dict[str, Any] = json.loads((case / "expected.json").read_text())
    profile = load_profiles()[adapter]
    options: Any = HttpPushOptions(path="/push")
    if expected.get("adapter_options"):
        options = SerialOptions(port="/dev/null", adapter_options=expected["adapter_options"])
    source = SourceConfig(
        name=expected.get("source", "sensor"),
        transport="http_push",
        adapter=adapter,
        options=options,
    )
    zone = ZoneInfo(expected["timezone"]) if expected.get("timezone") else None
    inputs = sorted(case.glob("input*"))  # noqa: ASYNC240 (listing a small local folder)
    assert len(inputs) == len(expected["frames"]), "one expected answer per input file"
    async with Buffer(tmp_path / "buffer.sqlite", max_size=1 << 30, commit_interval=0.0) as buffer:
        intake = SourceIntake(source, profile, default_extractors()[profile.format], buffer, zone=zone)
        for path, want in zip(inputs, expected["frames"], strict=True):
            frame = Frame(source.name, path.read_bytes(), received_ms=want.get("received_ms", 0))
            if "error" in want:
                with pytest.raises(DecodeError) as caught:
                    await intake(frame)
                assert want["error"] in str(caught.value), path.name
            else:
                result = await intake(frame)
                got = {
                    "accepted": result.readings - result.duplicates,
                    "duplicates": result.duplicates,
                    "records": result.records,
                }
                assert got == {k: v for k, v in want.items() if k != "received_ms"}, path.name
        stored = await buffer.records()
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    assert [{k: v for k, v in to_wire(r).items() if k != "seq"} for r in stored] == expected["records"]
