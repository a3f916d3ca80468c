"""SPEC.md §6's checks in their order, without a server: which check refuses, and what was asked before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from footfall.protocol.envelope import CONTENT_TYPE, encode_body, make_batch
from footfall.protocol.errors import AuthError, ProtocolError
from footfall.protocol.ingest import (
    INGEST_PATH,
    NeedBody,
    NeedKey,
    Opened,
    advance,
    open_signed_batch,
    signed_batch_steps,
)
from footfall.protocol.records import Count
from footfall.protocol.signing import generate_key, public_bytes, sign_request

NOW = 1_772_960_400.0  # 2026-03-08T09:00:00Z
T0_MS = int(NOW * 1000)
KEY = generate_key()
AGENT = "agt_checks"


def _body(agent: str = AGENT, start_ms: int = T0_MS) -> bytes:
    return encode_body(make_batch(agent, [Count("door", "main", start_ms, start_ms + 60_000, 1, 0, seq=1)], T0_MS))


def _headers(body: bytes, *, key: Any = KEY, timestamp: int = int(NOW), content_type: str = CONTENT_TYPE,
             agent: str = AGENT) -> dict[str, str]:
    headers = sign_request(key, "POST", INGEST_PATH, agent, timestamp, body).as_dict()
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _drive(headers: dict[str, str], body: bytes, keys: Callable[[NeedKey], bytes | None]) -> tuple[list[str], Any]:
    """Run the steps; what they asked for, in order, and the opened batch or the refusal's code."""
    asked: list[str] = []
    steps = signed_batch_steps(headers, "POST", INGEST_PATH, NOW)
    try:
        step = advance(steps, None)
        while not isinstance(step, Opened):
            asked.append("body" if isinstance(step, NeedBody) else "key again" if step.again else "key")
            step = advance(steps, body if isinstance(step, NeedBody) else keys(step))
    except ProtocolError as exc:
        return asked, exc.code
    return asked, step


def _enrolled(step: NeedKey) -> bytes:
    if step.agent != AGENT:
        raise AuthError("not enrolled", code="unknown_agent")
    return public_bytes(KEY)


GOOD = _body()
CASES: list[tuple[str, dict[str, str], bytes, list[str], str]] = [
    ("wrong content type", _headers(GOOD, content_type="application/json"), GOOD, [], "unsupported_media_type"),
    ("no content type", _headers(GOOD, content_type=""), GOOD, [], "unsupported_media_type"),
    ("no signature", {"Content-Type": CONTENT_TYPE}, GOOD, [], "missing_signature"),
    ("unknown agent", _headers(GOOD, agent="agt_nobody"), GOOD, ["key"], "unknown_agent"),
    # The timestamp is checked once the agent is known, and before the body is asked for.
    ("stale timestamp", _headers(GOOD, timestamp=int(NOW) - 301), GOOD, ["key"], "timestamp_out_of_window"),
    ("another key", _headers(GOOD, key=generate_key()), GOOD, ["key", "body", "key again"], "bad_signature"),
    ("body changed", _headers(GOOD), _body(start_ms=T0_MS + 60_000), ["key", "body", "key again"], "bad_signature"),
    ("not a batch", _headers(b"junk"), b"junk", ["key", "body"], "malformed_batch"),
    ("a year ahead", _headers(_body(start_ms=T0_MS + 366 * 86_400_000)), _body(start_ms=T0_MS + 366 * 86_400_000),
     ["key", "body"], "malformed_batch"),
    ("someone else's batch", _headers(_body("agt_other")), _body("agt_other"), ["key", "body"], "agent_mismatch"),
]


@pytest.mark.parametrize(("headers", "body", "asked", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_check_refuses_in_its_turn(headers: dict[str, str], body: bytes, asked: list[str], code: str) -> None:
    assert _drive(headers, body, lambda step: None if step.again else _enrolled(step)) == (asked, code)


def test_a_batch_that_passes_every_check_is_opened() -> None:
    asked, opened = _drive(_headers(GOOD), GOOD, _enrolled)
    assert asked == ["key", "body"]
    assert (opened.signed.agent, opened.key, [r.seq for r in opened.batch.records]) == (AGENT, public_bytes(KEY), [1])


def test_a_stale_key_is_asked_for_again_and_the_fresh_one_verifies() -> None:
    rotated = generate_key()
    answers = {False: public_bytes(KEY), True: public_bytes(rotated)}  # the cache had the old key, the source the new
    asked, opened = _drive(_headers(GOOD, key=rotated), GOOD, lambda step: answers[step.again])
    assert asked == ["key", "body", "key again"]
    assert opened.key == public_bytes(rotated)


def test_the_same_key_again_is_refused_without_a_second_try() -> None:
    asked, code = _drive(_headers(GOOD, key=generate_key()), GOOD, _enrolled)
    assert (asked, code) == (["key", "body", "key again"], "bad_signature")


def test_open_signed_batch_runs_the_same_checks_for_a_reader_holding_the_body() -> None:
    looked_up: list[str] = []

    def public_key(agent: str) -> bytes:
        looked_up.append(agent)
        return public_bytes(KEY)

    opened = open_signed_batch(_headers(GOOD), "POST", INGEST_PATH, GOOD, public_key, NOW)
    assert opened.batch.agent == AGENT and looked_up == [AGENT]
    with pytest.raises(ProtocolError) as refused:
        open_signed_batch(_headers(GOOD, key=generate_key()), "POST", INGEST_PATH, GOOD, public_key, NOW)
    assert refused.value.code == "bad_signature" and looked_up == [AGENT, AGENT], "no cache: looked up once each"
