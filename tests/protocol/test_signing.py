"""Request signing: what verifies, and every way it must not."""

from __future__ import annotations

import pytest
from footfall.protocol import signing
from footfall.protocol.errors import BadSignature, MissingAuth, StaleTimestamp

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
