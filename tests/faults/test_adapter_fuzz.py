"""Every shipped adapter fed random and truncated frames: a DecodeError (counted), never a crash, never a reading.

Random bytes (hypothesis) must be refused. A golden case's input cut short, at every point, must be refused, or decode
to nothing more than the whole frame gives (a cut that only loses trailing whitespace): a
device's half-sent frame never becomes a different reading. Through the real intake and a real
buffer, refused frames are counted in the source's health and write nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config import HttpPushOptions, SourceConfig
from footfall.agent.decode.extract import DecodeError, default_extractors
from footfall.agent.decode.profile import load_profiles, shipped_root
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from hypothesis import given, settings
from hypothesis import strategies as st

PROFILES = load_profiles()
ROOT = Path(str(shipped_root()))
INPUTS = sorted(ROOT.glob("*/cases/*/input*"))
BOUNDED = settings(max_examples=150, deadline=None)


def _intake(adapter: str, buffer: Buffer | None = None) -> SourceIntake:
    """An intake for `adapter`; without a buffer (an unopened one) when only its pure decoding is used."""
    profile = PROFILES[adapter]
    source = SourceConfig(name="sensor", transport="http_push", adapter=adapter, options=HttpPushOptions(path="/p"))
    buffer = buffer or Buffer(Path("unused.sqlite"), max_size=1 << 20, commit_interval=0.0)
    return SourceIntake(source, profile, default_extractors()[profile.format], buffer)


def _readings(intake: SourceIntake, payload: bytes) -> Counter[Any] | None:
    """The frame's readings as a multiset, or None when it is refused (DecodeError, the only error allowed)."""
    try:
        return Counter(intake.decode(Frame("sensor", payload, received_ms=0)))
    except DecodeError:
        return None


@pytest.mark.parametrize("adapter", sorted(PROFILES))
def test_random_frames_are_refused(adapter: str) -> None:
    intake = _intake(adapter)

    @BOUNDED
    @given(payload=st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
    def feed(payload: bytes) -> None:
        readings = _readings(intake, payload)
        assert readings is None or not readings, f"{adapter} made readings of random bytes {payload!r}"

    feed()


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parents[2].name}/{p.parent.name}/{p.name}" for p in INPUTS])
def test_truncated_frames_never_become_other_readings(path: Path) -> None:
    adapter = path.parents[2].name
    intake = _intake(adapter)
    whole = path.read_bytes()
    full = _readings(intake, whole)
    # Every cut point (frames are small): exhaustive beats sampling here.
    for cut in range(len(whole)):
        readings = _readings(intake, whole[:cut])
        if readings:
            assert full is not None and not readings - full, f"{adapter}: {whole[:cut]!r} decoded to other readings"


@pytest.mark.parametrize("adapter", sorted(PROFILES))
async def test_refused_frames_are_counted_and_store_nothing(adapter: str, tmp_path: Path) -> None:
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0.0) as buffer:
        intake = _intake(adapter, buffer)
        # (An empty list is a valid frame with nothing to report, so it is not among these.)
        frames = [b"", b"\xff\xfe garbage", b"{", b'{"unexpected": true}', bytes(range(256))]
        for payload in frames:
            with pytest.raises(DecodeError):
                await intake(Frame("sensor", payload, received_ms=0))
        assert (intake.health.received, intake.health.errors, intake.health.accepted) == (len(frames), len(frames), 0)
        assert intake.health.state == "degraded" and intake.health.last_error_stage == "decoding"
        assert await buffer.records() == []
