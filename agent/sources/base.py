"""What every transport shares: the Frame it delivers, the Intake it delivers it to, the Source protocol, health.

Rules for a transport (after Vector's component spec):
- It MUST hand each device message to its source's `Intake` as one `Frame`, unparsed, and
  acknowledge the device (2xx, MQTT PUBACK, ...) only after the intake returned: that is,
  after the readings are committed to the buffer. Every transport is at-least-once from the
  device's side; resends are the decoder's to drop.
- It learns the outcome in its own terms: the intake returns what the frame came to (`Taken`),
  or raises `FrameRefused` (the frame does not fit its adapter: nothing was written, and
  sending it again will not help; `NotAuthentic` when its signature is wrong) or `NotStored`
  (the readings could not be committed: offer the frame again later).
- It MUST count what it received and what failed in the source's `SourceHealth`, and name
  the stage (receiving, decoding, buffering) in the error it records.

Transports move bytes: they import this module, their own helpers and their options class,
never the decoder or the buffer. What a transport needs of its source's adapter, the intake
gives: its name, its format's options (a Modbus register map) and, for a byte stream, a framer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

HealthState = Literal["ok", "degraded", "down"]
Stage = Literal["receiving", "decoding", "buffering"]
# A request header in `Frame.meta` (http_push) is `header:<lower-case name>`.
HEADER_PREFIX = "header:"


def now_ms() -> int:
    """Wall-clock milliseconds, for frames' arrival and health timestamps."""
    return int(time.time() * 1000)


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

    def headers(self) -> dict[str, str]:
        """The request headers the transport put in `meta`, by lower-case name (none but for http_push)."""
        return {key[len(HEADER_PREFIX) :]: value for key, value in self.meta.items() if key.startswith(HEADER_PREFIX)}


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


class FrameRefused(Exception):
    """The frame does not fit its source's adapter: nothing of it was written; sending it again will not help."""


class NotAuthentic(FrameRefused):
    """The frame's signature is missing or wrong: it is not from the sender it claims (HTTP 401)."""


class NotStored(Exception):
    """The frame's readings could not be committed (disk full, buffer closed): offer it again later."""


class Taken(Protocol):
    """What a frame came to, once committed."""

    @property
    def accepted(self) -> int:
        """Readings taken: neither resends nor ignored."""
        ...

    @property
    def duplicates(self) -> int:
        """Readings dropped as resends."""
        ...

    @property
    def records(self) -> int:
        """Records written."""
        ...

    @property
    def ignored(self) -> int:
        """Items the adapter leaves out (its `[where]`: a payment not completed, another event type)."""
        ...


class Piece(Protocol):
    """Something a framer cut from a byte stream: a frame, a frame to skip quietly, or garbage (with why)."""

    @property
    def kind(self) -> Literal["frame", "skipped", "garbage"]:
        """What it is."""
        ...

    @property
    def data(self) -> bytes:
        """Its bytes."""
        ...

    @property
    def note(self) -> str:
        """Why it is garbage."""
        ...


class Framer(Protocol):
    """Cuts one device's byte stream into frames (by its adapter's `[framing]`)."""

    def feed(self, data: bytes) -> Sequence[Piece]:
        """What the stream holds so far, after these bytes."""
        ...

    def flush(self) -> Sequence[Piece]:
        """What is left when the stream ends (a partial frame is garbage)."""
        ...


class Intake(Protocol):
    """A source's way in, as its transport sees it (agent/intake.py's SourceIntake implements it)."""

    @property
    def name(self) -> str:
        """The source's name (its records' sensor or terminal)."""
        ...

    @property
    def health(self) -> SourceHealth:
        """The source's health, which the transport keeps too."""
        ...

    @property
    def options(self) -> object:
        """The source's transport options: the options class its transport registers (config/transports.py)."""
        ...

    @property
    def adapter(self) -> str:
        """The name of the source's adapter profile, for messages."""
        ...

    @property
    def format_options(self) -> object:
        """The adapter's format section as the source uses it (a Modbus transport reads its register map)."""
        ...

    def framer(self) -> Framer | None:
        """A new framer for a byte stream from this source's device; None when the adapter has no `[framing]`."""
        ...

    def __call__(self, frame: Frame, *, once: str = "") -> Awaitable[Taken]:
        """Take the frame; returns once committed. Raises FrameRefused (nothing written) or NotStored.

        `once`: a key naming the frame's origin (a file): a frame whose key was already taken
        writes nothing, its readings all counted as duplicates.
        """
        ...


class Source(Protocol):
    """A running transport serving one or more configured sources (e.g. one HTTP server for all pushes)."""

    async def start(self) -> None:
        """Bind or connect; raise SourceError when that is impossible."""
        ...

    async def stop(self) -> None:
        """Stop taking frames; frames being taken finish first."""
        ...


class TransportFactory(Protocol):
    """Builds the running Source that serves every configured source of one transport (config/transports.py)."""

    def from_config(self, config: Any, intakes: Sequence[Intake], /) -> Source:
        """The transport for these sources; `config` is the whole AgentConfig (http_push reads its section)."""
        ...


class SourceError(Exception):
    """A transport could not start or lost its device; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable

