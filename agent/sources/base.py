"""What every transport shares: the Frame it delivers, the Source protocol, and per-source health.

Rules for a transport (after Vector's component spec):
- It MUST hand each device message to its source's intake as one `Frame`, unparsed, and
  acknowledge the device (2xx, MQTT PUBACK, ...) only after the intake returned: that is,
  after the readings are committed to the buffer. Every transport is at-least-once from the
  device's side; resends are the decoder's to drop.
- It MUST count what it received and what failed in the source's `SourceHealth`, and name
  the stage (receiving, decoding, buffering) in the error it records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

HealthState = Literal["ok", "degraded", "down"]
Stage = Literal["receiving", "decoding", "buffering"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One message from a device, as the transport got it."""

    source: str
    payload: bytes
    received_ms: int
    # What the transport knows about the frame. http_push: `url` (as requested), `path`, `remote`,
    # `content_type`, and every header as `header:<lower-case name>` (signature checks read them).
    # Never logged: it may hold credentials.
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class SourceHealth:
    """A source's health for `status`: its state, last error, last reading and counters.

    `received` counts frames; `accepted` readings taken; `dropped` readings dropped as
    resends; `errors` frames refused or not stored.
    """

    name: str
    transport: str
    adapter: str
    state: HealthState = "ok"
    last_error: str = ""
    last_error_stage: str = ""
    last_error_ms: int = 0
    last_reading_ms: int = 0
    received: int = 0
    accepted: int = 0
    dropped: int = 0
    errors: int = 0

    def took(self, now_ms: int, accepted: int, dropped: int) -> None:
        """A frame was decoded and committed."""
        self.state = "ok"
        self.last_reading_ms = now_ms
        self.accepted += accepted
        self.dropped += dropped

    def failed(self, now_ms: int, stage: Stage, message: str, *, down: bool = False) -> None:
        """A frame (or the transport) failed at `stage`: degraded, or down when nothing can arrive."""
        self.state = "down" if down else "degraded"
        self.last_error = message
        self.last_error_stage = stage
        self.last_error_ms = now_ms
        self.errors += 1

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return asdict(self)


class Intake(Protocol):
    """A source's way in: decode a frame and commit its readings (see agent/intake.py)."""

    health: SourceHealth

    def __call__(self, frame: Frame) -> Awaitable[object]:
        """Take the frame; raises DecodeError (bad frame, nothing written) or BufferError (not stored)."""
        ...


class Source(Protocol):
    """A running transport serving one or more configured sources (e.g. one HTTP server for all pushes)."""

    async def start(self) -> None:
        """Bind or connect; raise SourceError when that is impossible."""
        ...

    async def stop(self) -> None:
        """Stop taking frames; frames being taken finish first."""
        ...


class SourceError(Exception):
    """A transport could not start or lost its device; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


Clock = Callable[[], float]
