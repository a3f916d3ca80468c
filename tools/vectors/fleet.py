"""The fleet vectors of `protocol/vectors/fleet/*.json` (SPEC.md section 7).

One signed heartbeat, one signed configuration fetch (an empty body) and one key rotation, from
fixed keys, so that another implementation (a C firmware) can check its JSON bytes, canonical
strings, signatures and rotation proof against ours (SPEC.md sections 8-11). Deterministic:
Ed25519 signatures are.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol import fleet
from footfall.protocol.signing import canonical_string, public_bytes, public_key_b64, sign_request

from . import VECTORS_DIR

FOLDER = VECTORS_DIR / "fleet"
SEED = bytes(range(32))
NEW_SEED = bytes(range(32, 64))
AGENT = "agt_vector0001"
TIMESTAMP = 1767225600  # 2026-01-01T00:00:00Z


def _signed(key: Ed25519PrivateKey, method: str, path: str, body: bytes) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "timestamp": TIMESTAMP,
        "body": body.decode(),
        "body_sha256_hex": hashlib.sha256(body).hexdigest(),
        "canonical": canonical_string(method, path, AGENT, TIMESTAMP, body).decode(),
        "signature_b64": sign_request(key, method, path, AGENT, TIMESTAMP, body).signature,
    }


def build() -> dict[str, dict[str, Any]]:
    """Every fleet vector, keyed by file name."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    new = Ed25519PrivateKey.from_private_bytes(NEW_SEED)
    common = {"private_key_seed_hex": SEED.hex(), "public_key_hex": public_bytes(key).hex(), "agent": AGENT}
    heartbeat = fleet.Heartbeat(
        sent_at_ms=TIMESTAMP * 1000,
        version="0.1.0",
        hostname="gw-store-12",
        started_at_ms=TIMESTAMP * 1000 - 3_600_000,
        buffer=fleet.BufferState(depth=120, bytes=9120, max_size=1024**3, oldest_taken_ms=TIMESTAMP * 1000 - 10_000,
                                 next_seq=4411, acked_seq=4290),
        upload=fleet.UploadInfo(state="idle", last_success_ms=TIMESTAMP * 1000 - 2_000, uploaded_records=4290),
        sources=(fleet.SourceInfo("entrance", "http_push", "generic-json-counter", "ok", TIMESTAMP * 1000 - 1_000),),
        clock=fleet.ClockInfo(offset_s=-0.4, synchronized=True),
        disk_free_bytes=5 * 1024**3,
        config=fleet.ConfigInfo(applied_version=7),
    )
    rotation = fleet.make_rotation(AGENT, key, new)
    rotation_body = fleet.dump(rotation.as_json())
    return {
        "heartbeat": {
            "name": "heartbeat", "description": "A heartbeat (SPEC.md §9): compact JSON, signed like an upload.",
            **common, **_signed(key, "POST", fleet.HEARTBEAT_PATH, fleet.dump(heartbeat.as_json())),
        },
        "config-fetch": {
            "name": "config-fetch",
            "description": "GET /v1/agents/config/8 (SPEC.md §10): the body is empty, its SHA-256 is that of no bytes.",
            **common, **_signed(key, "GET", fleet.config_path(8), b""),
        },
        "rotate-key": {
            "name": "rotate-key",
            "description": "A key rotation (SPEC.md §11): the new key signs the rotation message (proof), "
            "the current key signs the request.",
            **common,
            "new_private_key_seed_hex": NEW_SEED.hex(),
            "new_public_key_b64": public_key_b64(new),
            "rotation_message": fleet.rotation_message(AGENT, public_key_b64(key), public_key_b64(new)).decode(),
            "proof_b64": rotation.proof,
            **_signed(key, "POST", fleet.ROTATE_KEY_PATH, rotation_body),
        },
    }

