"""Request signing: what verifies, and every way it must not."""

from __future__ import annotations

import pytest
from footfall.protocol import signing
from footfall.protocol.errors import BadSignature, MissingAuth, StaleTimestamp

from tests.protocol.weak_keys import FORGED, NOT_CANONICAL, SMALL_ORDER

BODY = b"\x78\x9cbody"


def _signed(key: signing.Ed25519PrivateKey, ts: int = 1000) -> signing.SignedHeaders:
    return signing.sign_request(key, "post", "/v1/ingest", "agt_1", ts, BODY)


def test_round_trip_and_method_is_case_insensitive() -> None:
    key = signing.generate_key()
    signing.verify_request(signing.public_bytes(key), "POST", "/v1/ingest", _signed(key), BODY)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/v1/heartbeat", BODY), ("PUT", "/v1/ingest", BODY), ("POST", "/v1/ingest", BODY + b"x")],
)
def test_any_change_breaks_the_signature(method: str, path: str, body: bytes) -> None:
    key = signing.generate_key()
    with pytest.raises(BadSignature):
        signing.verify_request(signing.public_bytes(key), method, path, _signed(key), body)


def test_another_agents_key_does_not_verify() -> None:
    with pytest.raises(BadSignature):
        signing.verify_request(signing.public_bytes(signing.generate_key()), "POST", "/v1/ingest",
                               _signed(signing.generate_key()), BODY)


def test_garbage_signature_is_a_bad_signature_not_a_crash() -> None:
    key = signing.generate_key()
    for sig in ("", "!!!", "AAAA", "a" * 200):
        forged = signing.SignedHeaders("agt_1", 1000, sig)
        with pytest.raises(BadSignature):
            signing.verify_request(signing.public_bytes(key), "POST", "/v1/ingest", forged, BODY)


def test_timestamp_window() -> None:
    signing.check_timestamp(1000, now=1000 + 300)
    signing.check_timestamp(1000, now=1000 - 300)
    for now in (1000 + 301, 1000 - 301, 0):
        with pytest.raises(StaleTimestamp):
            signing.check_timestamp(1000, now=now)


def test_headers_round_trip_and_missing_headers() -> None:
    signed = _signed(signing.generate_key())
    assert signing.read_headers(signed.as_dict()) == signed
    for missing in signed.as_dict():
        headers = {k: v for k, v in signed.as_dict().items() if k != missing}
        with pytest.raises(MissingAuth):
            signing.read_headers(headers)
    with pytest.raises(MissingAuth):
        signing.read_headers({**signed.as_dict(), signing.HEADER_TIMESTAMP: "yesterday"})


@pytest.mark.parametrize("key_hex", SMALL_ORDER + NOT_CANONICAL)
def test_small_order_and_non_canonical_keys_have_a_problem_and_verify_nothing(key_hex: str) -> None:
    key = bytes.fromhex(key_hex)
    problem = signing.public_key_problem(key)
    assert problem is not None and ("small order" in problem or "canonical" in problem), problem
    for body in (b"", b"any body at all"):
        forged = signing.SignedHeaders("agt_x", 1767225600, FORGED)
        with pytest.raises(BadSignature, match="enroll again"):
            signing.verify_request(key, "POST", "/v1/ingest", forged, body)


def test_the_identity_key_no_longer_verifies_the_forgery_from_the_issue() -> None:
    # With `01 00…00` as the key, `01 00…00 ‖ 00…00` used to verify over any body.
    forged = signing.SignedHeaders("agt_x", 1767225600, FORGED)
    with pytest.raises(BadSignature):
        signing.verify_request(bytes.fromhex(SMALL_ORDER[2]), "POST", "/v1/ingest", forged, b"a batch")


def test_real_keys_have_no_problem_and_other_bytes_are_named() -> None:
    for _ in range(100):
        assert signing.public_key_problem(signing.public_bytes(signing.generate_key())) is None
    assert "32-byte" in (signing.public_key_problem(b"short") or "")
    # About half of all y values have no point on the curve; y = 2 is one of them.
    assert "not a point" in (signing.public_key_problem((2).to_bytes(32, "little")) or "")
