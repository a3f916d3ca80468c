"""The stored test vectors, checked both ways: bytes -> records and records -> bytes; answers -> actions."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol import signing
from footfall.protocol.answers import IngestAnswer, interpret
from footfall.protocol.envelope import Batch, decode_body, encode_packed_records, encode_payload, pack_record
from footfall.protocol.errors import ProtocolError
from footfall.protocol.records import from_wire, to_wire

from tools.vectors import answers, batches

VECTORS = sorted(batches.FOLDER.glob("*.json"))
ANSWERS = sorted(answers.FOLDER.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_vectors_exist_for_both_outcomes() -> None:
    outcomes = {_load(p)["expect"] for p in VECTORS}
    assert outcomes == {"accept", "reject"}


def test_stored_vectors_match_the_builder() -> None:
    """A change to the wire format must come with regenerated vectors (./scripts/vectors)."""
    built = batches.build()
    assert sorted(built) == sorted(p.stem for p in VECTORS)
    for path in VECTORS:
        stored = _load(path)
        fresh = built[path.stem]
        for key in stored:
            if key == "body_hex" and stored["expect"] == "accept":
                # Compressed bytes may differ between zlib builds; compare what they decompress to.
                assert zlib.decompress(bytes.fromhex(stored[key])) == zlib.decompress(bytes.fromhex(fresh[key]))
            elif key not in ("signature_b64", "canonical") or stored["expect"] == "reject":
                assert stored[key] == fresh[key], f"{path.name}: {key}"


@pytest.mark.parametrize("path", [p for p in VECTORS if _load(p)["expect"] == "accept"], ids=lambda p: p.stem)
def test_accept_vector_both_ways(path: Path) -> None:
    v = _load(path)
    body = bytes.fromhex(v["body_hex"])
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["private_key_seed_hex"]))
    assert signing.public_bytes(key).hex() == v["public_key_hex"]

    # bytes -> records
    batch = decode_body(body)
    assert batch.agent == v["agent"]
    assert [to_wire(r) for r in batch.records] == v["records"]
    assert zlib.decompress(body) == bytes.fromhex(v["payload_hex"])

    # records -> bytes, by both encoders
    records = tuple(from_wire(r) for r in v["records"])
    rebuilt = Batch(v["agent"], records[0].seq, records[-1].seq, v["sent_at_ms"], records)
    assert encode_payload(rebuilt).hex() == v["payload_hex"]
    spliced = encode_packed_records(v["agent"], [pack_record(r) for r in records], rebuilt.seq_first,
                                    rebuilt.seq_last, v["sent_at_ms"])
    assert zlib.decompress(spliced).hex() == v["payload_hex"]

    # signature: the canonical string, the deterministic signature, and verification
    canonical = signing.canonical_string(v["method"], v["path"], v["agent"], v["timestamp"], body)
    assert canonical.decode() == v["canonical"]
    signed = signing.sign_request(key, v["method"], v["path"], v["agent"], v["timestamp"], body)
    assert signed.signature == v["signature_b64"]
    signing.verify_request(bytes.fromhex(v["public_key_hex"]), v["method"], v["path"], signed, body)


@pytest.mark.parametrize("path", [p for p in VECTORS if _load(p)["expect"] == "reject"], ids=lambda p: p.stem)
def test_reject_vector(path: Path) -> None:
    v = _load(path)
    with pytest.raises(ProtocolError) as caught:
        decode_body(bytes.fromhex(v["body_hex"]))
    assert caught.value.code == v["error"]
    # The signature over a malformed body is still well-formed: rejection is about the body.
    signed = signing.SignedHeaders(v["agent"], v["timestamp"], v["signature_b64"])
    signing.verify_request(bytes.fromhex(v["public_key_hex"]), v["method"], v["path"], signed,
                           bytes.fromhex(v["body_hex"]))
    assert base64.b64decode(v["signature_b64"])


def test_stored_answer_vectors_match_the_builder() -> None:
    stored = {p.stem: _load(p) for p in ANSWERS}
    assert stored == answers.build(), "regenerate with ./scripts/vectors"
    assert {v["expect"]["action"] for v in stored.values()} == {
        "ack", "split", "isolate", "fix_clock", "reenroll", "retry"
    }, "every action of SPEC.md section 6 has a vector"


@pytest.mark.parametrize("path", ANSWERS, ids=lambda p: p.stem)
def test_answer_vector(path: Path) -> None:
    v = _load(path)
    body = v["body"].encode()
    action = interpret(v["status"], v["headers"], body, v["now"])
    assert answers.describe(action) == v["expect"]
    if v["expect"]["action"] == "ack":
        answer = IngestAnswer(**v["expect"]["answer"])
        assert IngestAnswer.decode(body) == answer and answer.encode() == body
