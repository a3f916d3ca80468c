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

    `state`: ok (the last frame was taken), degraded (connected, but the last frame was refused,
    garbage arrived, the device answered with an error or fell silent), down (the device cannot
    be reached; the transport is reconnecting). `received` counts frames; `accepted` readings
    taken; `dropped` readings dropped as resends; `errors` frames refused or not stored and
    connection failures; `garbage` bytes (serial) or messages (other transports) that formed
    no frame or were refused; `reconnects` how often a connection that was up was lost.
    `records` counts the records its readings made, `rejected` those of them the collector
    refused as malformed (parked on the gateway, never counted): the same number means that
    nothing this source sends is counted, an outage whatever its own state says.
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
    # Bytes (serial) or messages (other transports) thrown away as not a frame of this device.
    garbage: int = 0
    reconnects: int = 0
    connected: bool = False
    records: int = 0
    rejected: int = 0
    last_rejected: str = ""
    last_rejected_ms: int = 0

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

    def up(self) -> None:
        """The transport reached its device (port open, broker or server connected)."""
        self.connected = True
        if self.state == "down":
            self.state = "ok"

    def down(self, now_ms: int, message: str) -> None:
        """The device cannot be reached: nothing can arrive until the transport reconnects."""
        if self.connected:
            self.reconnects += 1
        self.connected = False
        self.failed(now_ms, "receiving", message, down=True)

    def threw_away(self, now_ms: int, amount: int, message: str) -> None:
        """Garbage on the wire: counted, and the source is degraded until its next good frame."""
        self.garbage += amount
        self.state = "degraded" if self.state != "down" else "down"
        self.last_error = message
        self.last_error_stage = "receiving"
        self.last_error_ms = now_ms

    @property
    def all_refused(self) -> bool:
        """Whether the collector refused as many of its records as it made (since the agent started)."""
        return self.rejected > 0 and self.rejected >= self.records

    def refused(self, now_ms: int, reason: str) -> None:
        """The collector refused one of this source's records as malformed (it is parked, not counted)."""
        self.rejected += 1
        self.last_rejected = reason
        self.last_rejected_ms = now_ms

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
