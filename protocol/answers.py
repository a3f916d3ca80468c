"""The answers to an upload (SPEC.md section 6) and what an agent does with each.

`IngestAnswer` is the 200 body: the collector writes it, the agent reads it. `ErrorAnswer` is
the `{"error", "message"}` body of every refusal. `interpret` reads any answer (status,
headers, body) and says the one thing the agent does next, the right-hand column of SPEC.md
section 6's table:

| answer | action |
|---|---|
| 2xx with an integer `acked_seq` | `Ack`: delete what it covers |
| 413 | `Split`: halve the batch, send the halves in order |
| 400 | `Isolate`: halve down to the record the collector refuses |
| 401 `timestamp_out_of_window` with the collector's time | `FixClock`: correct the request clock, send again |
| any other 401 | `Reenroll`: keep the data, say so, back off |
| 429 and 503 | `Retry` after `Retry-After` |
| anything else (other 5xx, a 2xx without `acked_seq`, a code not listed) | `Retry` with backoff |

So the agent's uploader only drives I/O and keeps its counters, as psycopg's generators sit
under its connection. Pure: no I/O, no clock of its own (`now` is given), and nothing in an
answer can make `interpret` fail: a body that is not the JSON described is a reason, not an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from .signing import HEADER_SERVER_TIME
from .strict_json import JsonRefused, loads_object

# An answer is a few dozen bytes; anything this long is a proxy's page, not the collector's answer.
MAX_ANSWER_BYTES = 64 * 1024
# What a reason quotes of a body that is not the JSON described (a proxy's HTML page, say).
_QUOTED = 200


class MalformedAnswer(ValueError):
    """A 2xx body that is not the ingest answer of SPEC.md section 6."""


@dataclass(frozen=True, slots=True)
class IngestAnswer:
    """The 200 answer: records committed now, records the collector had already, and what the agent may delete."""

    accepted: int
    duplicates: int
    acked_seq: int

    def as_json(self) -> dict[str, int]:
        """The JSON object of SPEC.md section 6."""
        return {"accepted": self.accepted, "duplicates": self.duplicates, "acked_seq": self.acked_seq}

    def encode(self) -> bytes:
        """The body as sent."""
        return json.dumps(self.as_json()).encode()

    @classmethod
    def decode(cls, body: bytes) -> IngestAnswer:
        """Read a 2xx body; MalformedAnswer without an integer `acked_seq` (the counts default to 0)."""
        data = _object(body)
        acked = data.get("acked_seq")
        if type(acked) is not int or acked < 0:
            raise MalformedAnswer(f"the answer has no acked_seq: {_quote(body)}")
        return cls(_count(data.get("accepted")), _count(data.get("duplicates")), acked)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A refusal's body: a stable `code` and a `message` for people."""

    code: str
    message: str

    def as_json(self) -> dict[str, str]:
        """The JSON object every error answer has."""
        return {"error": self.code, "message": self.message}

    def encode(self) -> bytes:
        """The body as sent."""
        return json.dumps(self.as_json()).encode()

    @classmethod
    def decode(cls, body: bytes) -> ErrorAnswer:
        """Read any error body: the code ("" when there is none) and a reason (the message, the code, or the body)."""
        data = _object(body)
        code, message = data.get("error"), data.get("message")
        code = code if isinstance(code, str) else ""
        return cls(code, message if isinstance(message, str) and message else code or _text(body))


@dataclass(frozen=True, slots=True)
class Ack:
    """2xx: everything up to `answer.acked_seq` is committed; delete it."""

    answer: IngestAnswer


@dataclass(frozen=True, slots=True)
class Split:
    """413: the batch is over a limit; halve it and send the halves in order."""

    reason: str


@dataclass(frozen=True, slots=True)
class Isolate:
    """400: something in the batch is refused; halve down to the one record, which the agent sets aside."""

    reason: str


@dataclass(frozen=True, slots=True)
class FixClock:
    """401 `timestamp_out_of_window`: the request clock is `offset_s` behind the collector's; correct it and resend."""

    offset_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reenroll:
    """Any other 401: this agent is unknown, revoked or its key is not the one enrolled. Keep the data."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again later: after `after_s` seconds when the collector said (429, 503), else with backoff."""

    reason: str
    after_s: float | None = None


Action = Ack | Split | Isolate | FixClock | Reenroll | Retry


def interpret(status: int, headers: Mapping[str, str], body: bytes, now: float) -> Action:
    """What the agent does with one answer to an upload (see the module's table).

    `headers` is a case-insensitive mapping (an HTTP client's), `now` the agent's clock, in
    Unix seconds, when it sent the request.
    """
    if 200 <= status < 300:
        try:
            return Ack(IngestAnswer.decode(body))
        except MalformedAnswer:
            return Retry(f"the collector answered {status} without an acked_seq: {_quote(body)}")
    error = ErrorAnswer.decode(body)
    if status == 413:
        return Split(error.message)
    if status == 400:
        return Isolate(error.message)
    if status == 401 and error.code == "timestamp_out_of_window":
        server = server_time(headers)
        if server is None:
            return Retry(f"the collector finds the request clock wrong ({error.message}) but sent no time to set it by")
        return FixClock(server - now, error.message)
    if status == 401:
        return Reenroll(error.code, error.message)
    if status in (429, 503):
        return Retry(f"collector busy ({status}): {error.message}", retry_after(headers.get("Retry-After"), now))
    return Retry(f"collector answered {status}: {error.message}")


def server_time(headers: Mapping[str, str]) -> float | None:
    """The collector's clock from `X-Footfall-Server-Time` (Unix seconds), or None when absent or unreadable."""
    value = headers.get(HEADER_SERVER_TIME)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _object(body: bytes) -> dict[str, Any]:
    """The body's JSON object, or {} when it is not one (an answer the agent cannot read is still an answer)."""
    try:
        return loads_object(body, max_bytes=MAX_ANSWER_BYTES)
    except JsonRefused:
        return {}


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _text(body: bytes) -> str:
    return body[:_QUOTED].decode("utf-8", errors="replace")


def _quote(body: bytes) -> str:
    return repr(_text(body))
