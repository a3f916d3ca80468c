"""Signed requests to the collector (protocol/SPEC.md sections 4 and 8): the agent's one way to send one.

Uploads (`agent/uploader.py`), heartbeats, configuration fetches and reports, and key rotation
all go through `send_signed`: the body is signed as sent (method, path, agent, timestamp,
SHA-256 of the body; `protocol/signing.py`) with the key given, the request timestamp
corrected by the clock offset the agent has measured, and that correction sent in
`X-Footfall-Clock-Offset` so the collector can still estimate the agent's own skew. `call` is
the JSON form the fleet requests use. One attempt per call: the callers decide what a failure
means (an upload backs off and retries, a heartbeat is simply skipped). The answer's body is
read up to the largest message the protocol has; a longer one is no answer from a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol import signing
from footfall.protocol.answers import ErrorAnswer, server_time
from footfall.protocol.fleet import HEADER_CLOCK_OFFSET, JSON_TYPE, MAX_MESSAGE_BYTES, dump

_READ_CHUNK = 64 * 1024


class CollectorUnreachable(Exception):
    """The request did not get an answer (DNS, connection, TLS, timeout, an answer too long to be one)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, headers and body as received, and when we sent the request and got the answer."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    sent: float
    received: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    @property
    def server_time(self) -> float | None:
        """The collector's clock when it answered (`X-Footfall-Server-Time`), None when it did not say."""
        return server_time(self.headers)

    @property
    def code(self) -> str:
        """The error code of a refusal ("" when there is none)."""
        return ErrorAnswer.decode(self.raw).code

    @property
    def reason(self) -> str:
        """The collector's message, or the start of the body."""
        return ErrorAnswer.decode(self.raw).message


async def send_signed(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    path: str,
    agent: str,
    key: Ed25519PrivateKey,
    body: bytes,
    *,
    content_type: str | None = None,
    offset_s: float = 0.0,
    timeout_s: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Reply:
    """One signed request to `url + path`; CollectorUnreachable when no answer came."""
    target = url.rstrip("/") + path
    sent = clock()
    headers = signing.sign_request(key, method, path, agent, int(sent + offset_s), body).as_dict()
    headers[HEADER_CLOCK_OFFSET] = f"{offset_s:.3f}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        async with session.request(
            method, target, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            raw = await _read(response, target)
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        # aiohttp's own timeouts (ServerTimeoutError, ...) are TimeoutErrors too.
        raise CollectorUnreachable(
            f"cannot reach the collector at {target}: no answer within {timeout_s:g} s", timed_out=True
        ) from None
    except aiohttp.ClientError as exc:
        raise CollectorUnreachable(f"cannot reach the collector at {target}: {exc or type(exc).__name__}") from None
    return Reply(status, answer_headers, raw, sent, clock())


async def call(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    path: str,
    agent: str,
    key: Ed25519PrivateKey,
    payload: Mapping[str, Any] | None = None,
    *,
    offset_s: float = 0.0,
    limit_s: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Reply:
    """One signed JSON request (an empty body when `payload` is None, as a GET has)."""
    return await send_signed(
        session, url, method, path, agent, key, dump(payload) if payload is not None else b"",
        content_type=JSON_TYPE if payload is not None else None, offset_s=offset_s, timeout_s=limit_s, clock=clock,
    )


async def _read(response: aiohttp.ClientResponse, target: str) -> bytes:
    """The answer's body, at most MAX_MESSAGE_BYTES (a config document is the largest answer there is)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise CollectorUnreachable(
                f"the answer from {target} is over {MAX_MESSAGE_BYTES} bytes: not a collector's answer (a proxy?)"
            )
        parts.append(chunk)
    return b"".join(parts)
