"""The batch vectors of `protocol/vectors/*.json` (SPEC.md section 7), from fixed keys and records.

The output is deterministic: Ed25519 signatures are, and zlib at a fixed level is on one build.
Tests check the stored vectors both ways, so a change to the wire format shows up as a diff here.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol.envelope import COMPRESSION_LEVEL, encode_body, encode_payload, make_batch
from footfall.protocol.ingest import INGEST_PATH
from footfall.protocol.records import Count, Occupancy, Record, SensorEvent, Transaction, to_wire
from footfall.protocol.signing import canonical_string, public_bytes, sign_request

from . import VECTORS_DIR

FOLDER = VECTORS_DIR
SEED = bytes(range(32))
AGENT = "agt_vector0001"
TIMESTAMP = 1767225600  # 2026-01-01T00:00:00Z
PATH = INGEST_PATH
T0 = 1772960400000  # 2026-03-08T09:00:00Z

ACCEPT: dict[str, tuple[str, list[Record]]] = {
    "count-single": (
        "One one-minute count.",
        [Count("door-1", "main", T0, T0 + 60_000, 3, 2, seq=1)],
    ),
    "mixed-records": (
        "Every record type, optional fields present and absent, a seq that skips (a lost record).",
        [
            Count("door-1", "main", T0, T0 + 60_000, 12, 9, seq=41),
            Occupancy("ceiling-2", "floor", T0 + 30_000, 17, seq=42),
            Transaction("pos-1", "T-1001", T0 + 45_000, "sale", 1250, "EUR", items=3, seq=43),
            Transaction("pos-1", "T-1002", T0 + 50_000, "refund", 499, "EUR", raw="REFUND 4.99", seq=44),
            SensorEvent("agent", T0 + 55_000, "gap", "buffer full", lost_first=45, lost_last=99, seq=100),
            Count("door-1", "main", T0 + 60_000, T0 + 120_000, 0, 1, seq=101, clock="restamped"),
        ],
    ),
}

def _envelope(records: list[Any]) -> bytes:
    """A body around `records` (any msgpack values) with a consistent seq range where they have one."""
    seqs = [r["seq"] for r in records if isinstance(r, dict)] or [1]
    envelope = {"v": 1, "agent": AGENT, "seq_first": seqs[0], "seq_last": seqs[-1], "sent_at_ms": T0,
                "records": records}
    return zlib.compress(msgpack.packb(envelope), COMPRESSION_LEVEL)


# Bodies that must be refused, and the error code they must get.
REJECT: dict[str, tuple[str, str, bytes]] = {
    "not-zlib": ("A body that is not zlib.", "malformed_batch", b"\x00\x01not zlib at all"),
    "not-msgpack": ("zlib around bytes that are not msgpack.", "malformed_batch", zlib.compress(b"\xc1\xc1\xc1")),
    "seq-range-lies": (
        "The envelope claims 1..5 but its one record is seq 3.",
        "malformed_batch",
        zlib.compress(
            msgpack.packb(
                {"v": 1, "agent": AGENT, "seq_first": 1, "seq_last": 5, "sent_at_ms": T0,
                 "records": [to_wire(Count("door-1", "main", T0, T0 + 60_000, 1, 0, seq=3))]},
            ),
            COMPRESSION_LEVEL,
        ),
    ),
    "unknown-version": (
        "Envelope version 2.",
        "malformed_batch",
        zlib.compress(
            msgpack.packb(
                {"v": 2, "agent": AGENT, "seq_first": 1, "seq_last": 1, "sent_at_ms": T0,
                 "records": [to_wire(Count("door-1", "main", T0, T0 + 60_000, 1, 0, seq=1))]},
            ),
        ),
    ),
    "negative-amount": (
        "A transaction with a negative amount (the kind carries the sign).",
        "malformed_batch",
        zlib.compress(
            msgpack.packb(
                {"v": 1, "agent": AGENT, "seq_first": 1, "seq_last": 1, "sent_at_ms": T0,
                 "records": [{"type": "transaction", "terminal": "pos-1", "txn_id": "T", "at_ms": T0,
                              "kind": "refund", "amount_minor": -100, "currency": "EUR", "seq": 1}]},
            ),
        ),
    ),
    "nul-in-text": (
        "A receipt whose raw text holds a NUL and an ESC (texts carry no control characters but newline and tab).",
        "malformed_batch",
        _envelope([{"type": "transaction", "terminal": "pos-1", "txn_id": "T", "at_ms": T0, "kind": "sale",
                    "amount_minor": 100, "currency": "EUR", "raw": "\x1b@TOTAL 1.00\n\x00", "seq": 1}]),
    ),
    "time-before-2000": (
        "A count dated 1999-12-31 (record times lie in 2000-2100 UTC).",
        "malformed_batch",
        _envelope([to_wire(Count("door-1", "main", 946_684_740_000, 946_684_800_000, 1, 0, seq=1))]),
    ),
    "nested-arrays": (
        "Where a record belongs, an array of empty arrays (records are flat maps of scalars).",
        "malformed_batch",
        _envelope([[[] for _ in range(8)]]),
    ),
    "too-many-months": (
        "Records in seven calendar months (a batch spans at most six).",
        "batch_too_large",
        _envelope([to_wire(Count("door-1", "main", T0 + i * 31 * 86_400_000, T0 + i * 31 * 86_400_000 + 60_000,
                                 1, 0, seq=i + 1)) for i in range(7)]),
    ),
}


def build() -> dict[str, dict[str, Any]]:
    """Every vector, keyed by file name."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    common = {
        "private_key_seed_hex": SEED.hex(),
        "public_key_hex": public_bytes(key).hex(),
        "agent": AGENT,
        "method": "POST",
        "path": PATH,
        "timestamp": TIMESTAMP,
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (description, records) in ACCEPT.items():
        batch = make_batch(AGENT, records, T0 + 120_000)
        body = encode_body(batch)
        signed = sign_request(key, "POST", PATH, AGENT, TIMESTAMP, body)
        out[name] = {
            "name": name, "description": description, **common, "expect": "accept",
            "records": [to_wire(r) for r in records],
            "sent_at_ms": batch.sent_at_ms,
            "payload_hex": encode_payload(batch).hex(),
            "body_hex": body.hex(),
            "canonical": canonical_string("POST", PATH, AGENT, TIMESTAMP, body).decode(),
            "signature_b64": signed.signature,
        }
    for name, (description, error, body) in REJECT.items():
        signed = sign_request(key, "POST", PATH, AGENT, TIMESTAMP, body)
        out[name] = {
            "name": name, "description": description, **common, "expect": "reject", "error": error,
            "body_hex": body.hex(),
            "canonical": canonical_string("POST", PATH, AGENT, TIMESTAMP, body).decode(),
            "signature_b64": signed.signature,
        }
    return out

