"""protocol/fleet.py: heartbeat, configuration and key-rotation messages (SPEC.md §8-11), with no I/O."""

from __future__ import annotations

import base64
import json

import pytest
from footfall.protocol import fleet as proto
from footfall.protocol.signing import generate_key, public_bytes, public_key_b64


def test_a_heartbeat_round_trips_and_unknown_keys_are_ignored() -> None:
    beat = proto.Heartbeat(
        sent_at_ms=1767225600000, version="0.1.0", hostname="gw", started_at_ms=1767222000000,
        buffer=proto.BufferState(depth=3, bytes=300, max_size=1024, oldest_taken_ms=1767225590000),
        upload=proto.UploadInfo(state="idle", uploaded_records=7),
        sources=(proto.SourceInfo("door", "http_push", "generic-json-counter", "down", 0, 2, "no route"),),
        clock=proto.ClockInfo(-0.25, None), disk_free_bytes=10**9, config=proto.ConfigInfo(7, 8, "bad key"),
    )
    body = proto.dump(beat.as_json())
    assert proto.decode_heartbeat(body) == beat
    assert beat.sources_down == 1
    newer = json.loads(body)
    newer["gps"] = {"lat": 1}
    newer["buffer"]["compressed"] = True
    assert proto.decode_heartbeat(proto.dump(newer)) == beat
    minimal = proto.decode_heartbeat(b'{"v": 1, "sent_at_ms": 5}')
    assert minimal == proto.Heartbeat(sent_at_ms=5)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"v": 2, "sent_at_ms": 1}', "v must be 1"),
        (b'{"v": 1}', "sent_at_ms is required"),
        (b'{"v": 1, "sent_at_ms": true}', "sent_at_ms must be an integer"),
        (b'{"v": 1, "sent_at_ms": 1, "buffer": []}', "buffer must be an object"),
        (b'{"v": 1, "sent_at_ms": 1, "sources": [{"state": "ok"}]}', "sources[0] is incomplete"),
        (b'{"v": 1, "sent_at_ms": 1, "clock": {"synchronized": "yes"}}', "clock.synchronized must be bool"),
    ],
)
def test_a_malformed_heartbeat_is_refused_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(proto.MalformedMessage, match=reason.replace("[", r"\[").replace("]", r"\]")) as caught:
        proto.decode_heartbeat(body)
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


def test_answers_documents_and_reports() -> None:
    ref = proto.ConfigRef(8, proto.text_sha256("x = 1\n"), proto.config_path(8))
    answer = proto.HeartbeatAnswer(1, -0.5, ref, True)
    assert proto.decode_heartbeat_answer(proto.dump(answer.as_json())) == answer
    assert proto.decode_heartbeat_answer(b'{"server_time_ms": 1, "config": null}').config is None
    with pytest.raises(proto.MalformedMessage, match="positive"):
        proto.decode_heartbeat_answer(b'{"server_time_ms": 1, "config": {"version": 0}}')
    document = proto.ConfigDocument(8, "x = 1\n")
    assert proto.decode_config_document(proto.dump(document.as_json())) == document
    tampered = {**document.as_json(), "config": "x = 2\n"}
    with pytest.raises(proto.MalformedMessage, match="does not match its sha256"):
        proto.decode_config_document(proto.dump(tampered))
    assert proto.decode_config_report(b'{"status": "rejected", "error": "no"}') == proto.ConfigReport("rejected", "no")
    assert proto.config_report_path(3) == "/v1/agents/config/3/report"


def test_a_rotation_proves_the_new_key_and_binds_it_to_the_agent_and_the_old_key() -> None:
    old, new = generate_key(), generate_key()
    rotation = proto.make_rotation("agt_one", old, new)
    assert rotation.new_public_key == public_key_b64(new)
    assert proto.verify_rotation("agt_one", public_bytes(old), proto.decode_rotation(proto.dump(rotation.as_json()))) \
        == public_bytes(new)
    for agent, old_key in (("agt_two", public_bytes(old)), ("agt_one", public_bytes(generate_key()))):
        with pytest.raises(proto.MalformedMessage, match="proof"):
            proto.verify_rotation(agent, old_key, rotation)
    short = proto.KeyRotation(base64.b64encode(b"short").decode(), rotation.proof)
    with pytest.raises(proto.MalformedMessage, match="32-byte"):
        proto.verify_rotation("agt_one", public_bytes(old), short)
    message = proto.rotation_message("agt_one", "OLD", "NEW")
    assert message == b"FOOTFALL-ROTATE-V1\nagt_one\nOLD\nNEW"


def test_clock_arithmetic() -> None:
    assert proto.clock_skew(1000, 0.0, 990.0) == 10.0
    assert proto.clock_skew(1000, 400.0, 1000.0) == -400.0, "an agent that corrected its clock by +400 s"
    assert proto.offset_from_exchange(100.0, 102.0, 111.0) == 10.0
    assert proto.read_clock_offset({proto.HEADER_CLOCK_OFFSET: "12.5"}) == 12.5
    assert proto.read_clock_offset({proto.HEADER_CLOCK_OFFSET: "soon"}) == 0.0
    assert proto.read_clock_offset({}) == 0.0


def test_the_fleet_vectors_match_the_builder_and_check_out_from_their_own_fields() -> None:
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from footfall.protocol.signing import canonical_string

    from tools.vectors import fleet as fleet_vectors

    stored = {p.stem: json.loads(p.read_text()) for p in sorted(fleet_vectors.FOLDER.glob("*.json"))}
    assert stored == fleet_vectors.build(), "regenerate with ./scripts/vectors"
    assert sorted(stored) == ["config-fetch", "heartbeat", "rotate-key"]
    for vector in stored.values():
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["private_key_seed_hex"]))
        body = vector["body"].encode()
        assert hashlib.sha256(body).hexdigest() == vector["body_sha256_hex"]
        canonical = canonical_string(vector["method"], vector["path"], vector["agent"], vector["timestamp"], body)
        assert canonical.decode() == vector["canonical"]
        key.public_key().verify(base64.b64decode(vector["signature_b64"]), canonical)
    rotation = stored["rotate-key"]
    new = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(rotation["new_private_key_seed_hex"]))
    new.public_key().verify(base64.b64decode(rotation["proof_b64"]), rotation["rotation_message"].encode())
    assert proto.decode_heartbeat(stored["heartbeat"]["body"].encode()).config.applied_version == 7


def test_a_rotation_to_a_small_order_key_is_refused_even_with_a_proof_that_verifies() -> None:
    # The identity as the new key, and the forgery it accepts over any message as the proof.
    identity = bytes([1]) + bytes(31)
    forged = proto.KeyRotation(base64.b64encode(identity).decode(), base64.b64encode(identity + bytes(32)).decode())
    with pytest.raises(proto.MalformedMessage, match="small order"):
        proto.verify_rotation("agt_one", public_bytes(generate_key()), forged)
    zero = proto.KeyRotation(base64.b64encode(bytes(32)).decode(), forged.proof)
    with pytest.raises(proto.MalformedMessage, match="small order"):
        proto.verify_rotation("agt_one", public_bytes(generate_key()), zero)
