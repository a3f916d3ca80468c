"""Ed25519 request signing: who sent a request, and that nobody changed it on the way.

The agent signs a canonical string built from the request (version tag, method, path,
agent id, timestamp and the body's SHA-256); the collector rebuilds it and verifies
with the agent's public key. The private key never leaves the gateway. The timestamp
window turns away replayed requests; replayed *data* is the job of the seq high-water
mark (see SPEC.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BadSignature, MissingAuth, StaleTimestamp

SCHEME = "FOOTFALL-ED25519-V1"
HEADER_AGENT = "X-Footfall-Agent"
HEADER_TIMESTAMP = "X-Footfall-Timestamp"
HEADER_SIGNATURE = "X-Footfall-Signature"
# Sent by the collector on every answer, so an agent with a wrong clock can correct its request timestamps.
HEADER_SERVER_TIME = "X-Footfall-Server-Time"
DEFAULT_WINDOW_S = 300
# Unix seconds in ASCII digits: at most 12 (a larger number cannot even be compared with a float clock).
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The three signing headers of one request."""

    agent: str
    timestamp: int
    signature: str

    def as_dict(self) -> dict[str, str]:
        """The headers as a dict ready for an HTTP client."""
        return {
            HEADER_AGENT: self.agent,
            HEADER_TIMESTAMP: str(self.timestamp),
            HEADER_SIGNATURE: self.signature,
        }


def canonical_string(method: str, path: str, agent: str, timestamp: int, body: bytes) -> bytes:
    """The exact bytes that are signed."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{SCHEME}\n{method.upper()}\n{path}\n{agent}\n{timestamp}\n{digest}".encode()


def sign_request(
    key: Ed25519PrivateKey, method: str, path: str, agent: str, timestamp: int, body: bytes
) -> SignedHeaders:
    """Sign one request; `timestamp` is Unix seconds."""
    signature = key.sign(canonical_string(method, path, agent, timestamp, body))
    return SignedHeaders(agent, timestamp, base64.b64encode(signature).decode())


def read_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Parse the signing headers from any (case-insensitive) mapping; raises MissingAuth."""
    get = headers.get
    agent, ts, sig = get(HEADER_AGENT), get(HEADER_TIMESTAMP), get(HEADER_SIGNATURE)
    if not agent or not ts or not sig:
        raise MissingAuth(f"request needs the {HEADER_AGENT}, {HEADER_TIMESTAMP} and {HEADER_SIGNATURE} headers")
    for name, value in ((HEADER_AGENT, agent), (HEADER_TIMESTAMP, ts), (HEADER_SIGNATURE, sig)):
        # Bytes that are not UTF-8 reach us as surrogates, which cannot be signed over or looked up.
        if not (value.isascii() and value.isprintable()):
            raise MissingAuth(f"{name} must be printable ASCII, got {value[:40]!r}")
    if not _UNIX_SECONDS.fullmatch(ts):
        raise MissingAuth(f"{HEADER_TIMESTAMP} must be Unix seconds, got {ts[:40]!r}")
    return SignedHeaders(agent, int(ts), sig)


def check_timestamp(timestamp: int, now: float, window_s: int = DEFAULT_WINDOW_S) -> None:
    """Raise StaleTimestamp when `timestamp` is more than `window_s` from `now`."""
    skew = timestamp - now
    if abs(skew) > window_s:
        raise StaleTimestamp(
            f"request timestamp is {skew:+.0f} s from the collector's clock; the window is ±{window_s} s"
        )


def verify_request(public_key: bytes, method: str, path: str, signed: SignedHeaders, body: bytes) -> None:
    """Verify a signature with a raw 32-byte public key; raises BadSignature."""
    try:
        signature = base64.b64decode(signed.signature, validate=True)
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signature, canonical_string(method, path, signed.agent, signed.timestamp, body))
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("signature does not verify against this agent's public key") from exc


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 key pair."""
    return Ed25519PrivateKey.generate()


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The public key as standard base64, as enrollment sends it."""
    return base64.b64encode(public_bytes(key)).decode()
