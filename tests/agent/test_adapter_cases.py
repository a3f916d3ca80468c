"""Every case of every adapter, through the real decode path and a real buffer (one table-driven test).

The case format is described in tests/fixtures/adapter_cases.py and firmware-adapters/README.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.clock import Stamp
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, FrameRefused, NotAuthentic
from footfall.protocol.records import to_wire

from tests.fixtures.adapter_cases import ROOT, case_folders, load_case

CASES = case_folders()


def test_every_adapter_has_its_readme_profile_and_cases() -> None:
    adapters = sorted(p for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("__"))
    assert {a.name for a in adapters} >= {"generic-json-counter", "generic-json-pos", "square-webhook"}
    for adapter in adapters:
        assert (adapter / "profile.toml").is_file(), adapter
        assert (adapter / "README.md").is_file(), adapter
        cases = [load_case(c) for c in (adapter / "cases").iterdir()]
        frames = [f.want for case in cases for f in case.frames]
        assert any("error" in f for f in frames), f"{adapter.name} has no malformed-input case"
        # A cumulative counter re-sending its totals makes a zero count, not a duplicate: such cases say "resend".
        assert any(f.get("duplicates") for f in frames) or any(c.expected.get("resend") for c in cases), (
            f"{adapter.name} has no resend case"
        )


@pytest.mark.parametrize("folder", CASES, ids=[f"{c.parent.parent.name}/{c.name}" for c in CASES])
async def test_adapter_case(folder: Path, tmp_path: Path) -> None:
    case = load_case(folder)
    profile = load_profiles()[case.adapter]
    source = case.source()
    zone = ZoneInfo(case.timezone) if case.timezone else None
    # The agent's clock, injected: at each frame's `received_ms` (a device without a clock is timed by it).
    arrival = [0]

    def stamps() -> Stamp:
        now_ms = arrival[0] or int(time.time() * 1000)
        return Stamp(now_ms, now_ms, "case", True)

    async with Buffer(tmp_path / "buffer.sqlite", max_size=1 << 30, commit_interval=0.0) as buffer:
        intake = SourceIntake(source, profile, default_extractors()[profile.format], buffer, zone=zone, stamps=stamps)
        for frame in case.frames:
            want = frame.want
            arrival[0] = want.get("received_ms", 0)
            arrived = Frame(
                source.name,
                frame.payload,
                received_ms=want.get("received_ms", 0),
                meta=frame.meta("http://127.0.0.1:8088/push"),
            )
            if "error" in want:
                with pytest.raises(FrameRefused) as caught:
                    await intake(arrived)
                assert want["error"] in str(caught.value), frame.name
                assert isinstance(caught.value, NotAuthentic) == (want.get("status") == 401), frame.name
                continue
            result = await intake(arrived)
            got = {"accepted": result.accepted, "duplicates": result.duplicates, "records": result.records}
            if result.ignored or "ignored" in want:
                got["ignored"] = result.ignored
            assert got == {k: v for k, v in want.items() if k not in ("request", "received_ms")}, frame.name
        stored = await buffer.records()
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    assert [{k: v for k, v in to_wire(r).items() if k != "seq"} for r in stored] == case.expected["records"]
