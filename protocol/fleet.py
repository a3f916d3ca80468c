"""Fleet messages (SPEC.md sections 8-11): heartbeat, configuration fetch and report, key rotation.

Pure code like the rest of `protocol/`: JSON bodies in and out, checked into small frozen
dataclasses, and the key-rotation proof. No I/O. Unlike records, these messages describe
state, so readers ignore keys they do not know (a newer agent may report more); a key that
is present with the wrong type is still an error (`MalformedMessage`, answered 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ProtocolError
from .signing import public_key_b64, public_key_problem
from .strict_json import JsonRefused, loads_object

VERSION = 1
JSON_TYPE = "application/json"
HEARTBEAT_PATH = "/v1/agents/heartbeat"
CONFIG_PATH = "/v1/agents/config/{version}"
CONFIG_REPORT_PATH = "/v1/agents/config/{version}/report"
ROTATE_KEY_PATH = "/v1/agents/rotate-key"
# Seconds the agent added to its own clock to make X-Footfall-Timestamp (unsigned; display only).
HEADER_CLOCK_OFFSET = "X-Footfall-Clock-Offset"
ROTATE_SCHEME = "FOOTFALL-ROTATE-V1"
# A pushed agent.toml is a small text file; this bounds what a collector stores and an agent fetches.
MAX_CONFIG_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024

UploadState = Literal["idle", "sending", "backing_off", "re-enroll", "off"]
ReportStatus = Literal["applied", "rejected"]
REPORT_STATUSES: tuple[ReportStatus, ...] = ("applied", "rejected")


class MalformedMessage(ProtocolError):
    """A fleet message that is not the JSON SPEC.md describes."""

    status = 400
    code = "bad_request"


def config_path(version: int) -> str:
    """Where an agent fetches configuration `version`."""
    return CONFIG_PATH.format(version=version)


def config_report_path(version: int) -> str:
    """Where an agent reports what it did with configuration `version`."""
    return CONFIG_REPORT_PATH.format(version=version)


@dataclass(frozen=True, slots=True)
class BufferState:
    """What waits on the gateway."""

    depth: int = 0
    bytes: int = 0
    max_size: int = 0
    oldest_taken_ms: int = 0
    next_seq: int = 0
    acked_seq: int = 0
    dropped_records: int = 0
    rejected: int = 0
    # Refused records parked on the gateway now (a requeue sends them again), and the newest one's reason.
    rejected_parked: int = 0
    rejected_reason: str = ""


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """How uploads go."""

    state: str = "off"
    last_success_ms: int = 0
    last_error: str = ""
    uploaded_records: int = 0


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One configured source's health."""

    name: str
    transport: str = ""
    adapter: str = ""
    state: str = "ok"
    last_reading_ms: int = 0
    errors: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ClockInfo:
    """The agent's view of its clock."""

    offset_s: float = 0.0
    synchronized: bool | None = None


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """Which fleet configuration the agent runs, and the last one it refused."""

    applied_version: int = 0
    rejected_version: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The body of `POST /v1/agents/heartbeat` (SPEC.md section 9)."""

    sent_at_ms: int
    version: str = ""
    hostname: str = ""
    started_at_ms: int = 0
    buffer: BufferState = BufferState()
    upload: UploadInfo = UploadInfo()
    sources: tuple[SourceInfo, ...] = ()
    clock: ClockInfo = ClockInfo()
    disk_free_bytes: int = 0
    config: ConfigInfo = ConfigInfo()

    @property
    def sources_down(self) -> int:
        """How many sources are not ok."""
        return sum(1 for s in self.sources if s.state != "ok")

    def as_json(self) -> dict[str, Any]:
        """The JSON object, `v` first."""
        body = asdict(self)
        body["sources"] = [asdict(s) for s in self.sources]
        return {"v": VERSION, **body}


@dataclass(frozen=True, slots=True)
class ConfigRef:
    """Where the configuration the fleet wants is."""

    version: int
    sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """The 200 answer to a heartbeat."""

    server_time_ms: int
    clock_skew_s: float | None = None
    config: ConfigRef | None = None
    rotate_key: bool = False

    def as_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "server_time_ms": self.server_time_ms,
            "clock_skew_s": self.clock_skew_s,
            "config": asdict(self.config) if self.config else None,
            "rotate_key": self.rotate_key,
        }


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """A fleet configuration version: an agent.toml text and its SHA-256."""

    version: int
    config: str
    sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", text_sha256(self.config))

    def as_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"version": self.version, "sha256": self.sha256, "config": self.config}


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """What an agent did with a configuration version."""

    status: ReportStatus
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"status": self.status, "error": self.error}


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """The body of `POST /v1/agents/rotate-key`: the new public key and the new key's proof."""

    new_public_key: str
    proof: str

    def as_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"new_public_key": self.new_public_key, "proof": self.proof}


def text_sha256(text: str) -> str:
    """The lowercase hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def dump(message: Mapping[str, Any]) -> bytes:
    """A message as compact UTF-8 JSON (the exact bytes that are signed and sent)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def load(body: bytes) -> dict[str, Any]:
    """A JSON object from a body, read by strict_json (bounded depth, storable strings); MalformedMessage otherwise."""
    try:
        return loads_object(body, max_bytes=MAX_MESSAGE_BYTES)
    except JsonRefused as exc:
        raise MalformedMessage(str(exc)) from None


def _get(data: Mapping[str, Any], key: str, kind: type[Any], default: Any, where: str) -> Any:
    """`data[key]` checked to be of `kind` (int excludes bool; float accepts int), or `default` when absent."""
    if key not in data or (data[key] is None and default is None):
        return default
    value = data[key]
    if kind is float and type(value) in (int, float):
        return float(value)
    if kind is int and type(value) is not int:
        raise MalformedMessage(f"{where}{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise MalformedMessage(f"{where}{key} must be {kind.__name__}, got {value!r}")
    return value


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    """A flat dataclass from `data`, each present field type-checked against its default's type."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        if f.name == "synchronized":
            values[f.name] = _get(data, f.name, bool, None, where)
            continue
        kind = str if f.default is MISSING else type(f.default)
        values[f.name] = _get(data, f.name, kind, f.default, where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise MalformedMessage(f"{where.rstrip('.')} is incomplete: {exc}") from None


def decode_heartbeat(body: bytes) -> Heartbeat:
    """Parse a heartbeat body; MalformedMessage when it is not one."""
    data = load(body)
    if data.get("v") != VERSION:
        raise MalformedMessage(f"v must be {VERSION}, got {data.get('v')!r}")
    sent_at_ms = _get(data, "sent_at_ms", int, None, "")
    if sent_at_ms is None:
        raise MalformedMessage("sent_at_ms is required")
    raw_sources = data.get("sources", [])
    if not isinstance(raw_sources, list) or not all(isinstance(s, dict) for s in raw_sources):
        raise MalformedMessage("sources must be an array of objects")
    sources = tuple(_build(SourceInfo, s, f"sources[{i}].") for i, s in enumerate(raw_sources))
    return Heartbeat(
        sent_at_ms=sent_at_ms,
        version=_get(data, "version", str, "", ""),
        hostname=_get(data, "hostname", str, "", ""),
        started_at_ms=_get(data, "started_at_ms", int, 0, ""),
        buffer=_build(BufferState, _section(data, "buffer"), "buffer."),
        upload=_build(UploadInfo, _section(data, "upload"), "upload."),
        sources=sources,
        clock=_build(ClockInfo, _section(data, "clock"), "clock."),
        disk_free_bytes=_get(data, "disk_free_bytes", int, 0, ""),
        config=_build(ConfigInfo, _section(data, "config"), "config."),
    )


def decode_heartbeat_answer(body: bytes) -> HeartbeatAnswer:
    """Parse the collector's 200 answer to a heartbeat."""
    data = load(body)
    server_time_ms = _get(data, "server_time_ms", int, None, "")
    if server_time_ms is None:
        raise MalformedMessage("server_time_ms is required")
    ref = data.get("config")
    config = None
    if ref is not None:
        if not isinstance(ref, dict):
            raise MalformedMessage("config must be an object or null")
        version = _get(ref, "version", int, None, "config.")
        if version is None or version < 1:
            raise MalformedMessage("config.version must be a positive integer")
        config = ConfigRef(version, _get(ref, "sha256", str, "", "config."), _get(ref, "path", str, "", "config."))
    return HeartbeatAnswer(
        server_time_ms=server_time_ms,
        clock_skew_s=_get(data, "clock_skew_s", float, None, ""),
        config=config,
        rotate_key=_get(data, "rotate_key", bool, False, ""),
    )


def decode_config_document(body: bytes) -> ConfigDocument:
    """Parse a fetched configuration and check its SHA-256; MalformedMessage otherwise."""
    data = load(body)
    version = _get(data, "version", int, None, "")
    text = _get(data, "config", str, None, "")
    sha = _get(data, "sha256", str, "", "")
    if version is None or text is None:
        raise MalformedMessage("version and config are required")
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise MalformedMessage(f"the configuration is over {MAX_CONFIG_BYTES} bytes")
    if sha != text_sha256(text):
        raise MalformedMessage(f"configuration {version}: its text does not match its sha256")
    return ConfigDocument(version, text, sha)


def decode_config_report(body: bytes) -> ConfigReport:
    """Parse an agent's configuration report."""
    data = load(body)
    status = data.get("status")
    if status not in REPORT_STATUSES:
        raise MalformedMessage(f"status must be one of {', '.join(REPORT_STATUSES)}, got {status!r}")
    error = _get(data, "error", str, "", "")
    return ConfigReport(status, error[:4000])


def rotation_message(agent: str, old_public_key_b64: str, new_public_key_b64: str) -> bytes:
    """The exact bytes the new key signs (SPEC.md section 11)."""
    return f"{ROTATE_SCHEME}\n{agent}\n{old_public_key_b64}\n{new_public_key_b64}".encode()


def make_rotation(agent: str, old_key: Ed25519PrivateKey, new_key: Ed25519PrivateKey) -> KeyRotation:
    """The rotation body: the new public key and its proof of possession."""
    new_b64 = public_key_b64(new_key)
    proof = new_key.sign(rotation_message(agent, public_key_b64(old_key), new_b64))
    return KeyRotation(new_b64, base64.b64encode(proof).decode())


def decode_rotation(body: bytes) -> KeyRotation:
    """Parse a rotation body (the proof is checked by `verify_rotation`)."""
    data = load(body)
    new_key = _get(data, "new_public_key", str, None, "")
    proof = _get(data, "proof", str, None, "")
    if new_key is None or proof is None:
        raise MalformedMessage("new_public_key and proof are required")
    return KeyRotation(new_key, proof)


def verify_rotation(agent: str, old_public_key: bytes, rotation: KeyRotation) -> bytes:
    """The new raw 32-byte public key, once its proof verifies; MalformedMessage otherwise."""
    try:
        new_key = base64.b64decode(rotation.new_public_key, validate=True)
        proof = base64.b64decode(rotation.proof, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("new_public_key and proof must be standard base64") from None
    problem = public_key_problem(new_key)
    if problem is not None:
        raise MalformedMessage(f"new_public_key {problem}; generate a new Ed25519 key")
    message = rotation_message(agent, base64.b64encode(old_public_key).decode(), rotation.new_public_key)
    try:
        Ed25519PublicKey.from_public_bytes(new_key).verify(proof, message)
    except (InvalidSignature, ValueError):
        raise MalformedMessage("proof is not the new key's signature of the rotation message") from None
    return new_key


def clock_skew(timestamp: int, offset_s: float, now: float) -> float:
    """The collector's estimate of (agent clock − collector clock), SPEC.md section 8."""
    return round(timestamp - offset_s - now, 3)


def read_clock_offset(headers: Mapping[str, str]) -> float:
    """The X-Footfall-Clock-Offset header as seconds; 0 when absent or unreadable (it is display-only)."""
    value = headers.get(HEADER_CLOCK_OFFSET)
    if not value:
        return 0.0
    try:
        offset = float(value)
    except ValueError:
        return 0.0
    return offset if abs(offset) < 10 * 365 * 86400 else 0.0


def offset_from_exchange(sent: float, received: float, server_time: float) -> float:
    """(server clock − our clock) from one request: the server's time against the midpoint of send and receive."""
    return server_time - (sent + received) / 2
