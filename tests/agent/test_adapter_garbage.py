"""Garbage into every adapter: refused with a DecodeError, counted as an error, nothing stored, never a crash.

Hypothesis feeds each shipped profile random bytes, cut-off copies of its own golden inputs,
random JSON documents and absurdly nested ones. A signed profile's garbage is signed with the
case's secret, so the parser behind the signature check is exercised too; over HTTP, a body
that fails to decode is answered 400 with the reason and changes nothing in the buffer, and a
bad signature 401.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import HttpPushSection
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, FrameRefused
from footfall.agent.sources.http_push import HttpPushServer, PushRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.adapter_cases import Case, case_folders, load_case

GARBAGE = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def good_case(adapter: str) -> Case:
    """The adapter's first case whose frames are all accepted (its inputs are the valid material to cut)."""
    for folder in case_folders():
        case = load_case(folder)
        if case.adapter == adapter and case.frames and all("error" not in f.want for f in case.frames):
            return case
    raise AssertionError(f"{adapter} has no case without errors")


ADAPTERS = sorted(load_profiles())
CASES = {name: good_case(name) for name in ADAPTERS}


def sign(case: Case, payload: bytes) -> dict[str, str]:
    """Headers that make `payload` pass the profile's signature check, if it has one."""
    secret = case.settings.get("secret", "")
    if not secret:
        return {}
    scheme = load_profiles()[case.adapter].signature
    assert scheme is not None
    if scheme.scheme == "square":
        message = str(case.settings.get("public_url", "")).encode() + payload
        digest = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
        return {"header:x-square-hmacsha256-signature": digest}
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return {"header:x-signature": f"signature={digest},algorithm=HMAC-SHA256"}


def take_garbage(adapter: str, payloads: list[bytes]) -> None:
    """Each payload must be refused (FrameRefused), counted, and leave the buffer empty."""
    case = CASES[adapter]
    profile = load_profiles()[adapter]

    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as folder:
            async with Buffer(Path(folder) / "b.sqlite", max_size=1 << 24, commit_interval=0) as buffer:
                intake = SourceIntake(case.source(), profile, default_extractors()[profile.format], buffer)
                for payload in payloads:
                    with pytest.raises(FrameRefused):
                        await intake(Frame(intake.source.name, payload, 0, {"url": "http://x/", **sign(case, payload)}))
                assert intake.health.errors == len(payloads)
                assert intake.health.accepted == 0
                assert await buffer.records() == []

    asyncio.run(scenario())


def truncations(adapter: str) -> st.SearchStrategy[bytes]:
    """Proper prefixes of a valid input (cut before its end, trailing whitespace aside).

    A prefix that ends at a line break is a complete, shorter file for line-oriented formats
    (a CSV with fewer rows), not garbage: those are left out.
    """
    payload = CASES[adapter].frames[0].payload.rstrip()
    return st.integers(0, len(payload) - 1).map(lambda n: payload[:n]).filter(lambda b: not b.endswith(b"\n"))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("adapter", ADAPTERS)
@GARBAGE
@given(data=st.data())
def test_random_and_truncated_bodies_are_refused_and_counted(adapter: str, data: st.DataObject) -> None:
    payloads = [
        data.draw(st.binary(max_size=300), label="random bytes"),
        data.draw(truncations(adapter), label="a cut-off valid body"),
    ]
    if load_profiles()[adapter].format == "form":
        # Random bytes may happen to be a well-formed empty form; still no payload field: refused.
        payloads.append(b"payload=" + payloads[0][:40].replace(b"&", b""))
    take_garbage(adapter, payloads)


@pytest.mark.parametrize("adapter", ADAPTERS)
@GARBAGE
@given(document=JSONISH)
def test_random_json_documents_never_crash(adapter: str, document: Any) -> None:
    """Any JSON document: either readings (were it by chance valid) or a DecodeError, never another exception."""
    case = CASES[adapter]
    profile = load_profiles()[adapter]
    payload = json.dumps(document).encode()
    if profile.format == "form":
        payload = b"type=sale.update&payload=" + payload
    intake = SourceIntake(case.source(), profile, default_extractors()[profile.format], _NoBuffer())  # type: ignore[arg-type]
    with contextlib.suppress(DecodeError):
        intake.decode_frame(Frame("x", payload, 0, {"url": "http://x/", **sign(case, payload)}))


class _NoBuffer:
    """decode_frame never touches the buffer."""


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_deeply_nested_bodies_are_refused(adapter: str) -> None:
    take_garbage(adapter, [b"[" * 100_000 + b"]" * 100_000, b"<a>" * 50_000 + b"</a>" * 50_000])


def snapshot(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("records", "state", "seen")}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("adapter", "mangle", "status", "reason"),
    [
        ("brickstream-xml", lambda body: body[: len(body) // 2], 400, "body is not XML"),
        ("hikvision-isapi-realtime", lambda body: body.replace(b"<enter>", b"<enter>-"), 400, "must be a whole number"),
        ("square-webhook", lambda body: body.replace(b"EUR", b"USD"), 401, "does not match"),
        ("lightspeed-webhook", lambda body: body[:-5], 401, "does not match"),
        ("irisys-vector", lambda body: body.replace(b"Timestamp", b"Tiemstamp"), 400, "Timestamp: missing"),
    ],
)
async def test_over_http_a_bad_frame_is_refused_with_its_reason_and_changes_nothing(
    adapter: str, mangle: Callable[[bytes], bytes], status: int, reason: str, tmp_path: Path
) -> None:
    case = CASES[adapter]
    profile = load_profiles()[adapter]
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 24, commit_interval=0) as buffer:
        intake = SourceIntake(case.source("/push"), profile, default_extractors()[profile.format], buffer)
        server = HttpPushServer(HttpPushSection(listen="127.0.0.1:0"), [PushRoute("/push", "", intake)])
        await server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/push"
            first = case.frames[0]
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
                async with session.post(url, data=first.payload, headers=first.headers) as response:
                    assert response.status == 200, await response.text()
                before = snapshot(buffer.path)
                async with session.post(url, data=mangle(first.payload), headers=first.headers) as response:
                    answer = await response.json()
                    assert response.status == status, answer
            assert reason in answer["message"] and "nothing was stored" in answer["message"]
            assert snapshot(buffer.path) == before
            assert intake.health.errors == 1 and intake.health.last_error_stage == "decoding"
        finally:
            await server.stop()
