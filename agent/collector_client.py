"""Signed JSON requests to the collector's fleet endpoints (protocol/SPEC.md section 8).

The heartbeat, the configuration fetch and report, and key rotation all go through `call`:
the body is compact JSON, signed like an upload (method, path, agent, timestamp, SHA-256 of the
body) with the key given, the request timestamp corrected by the clock offset the agent has
measured, and that correction sent in `X-Footfall-Clock-Offset` so the collector can still
estimate the agent's own skew. One attempt per call: the callers decide what a failure means
(a heartbeat is simply skipped).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol import signing
from footfall.protocol.fleet import HEADER_CLOCK_OFFSET, JSON_TYPE, dump


class CollectorUnreachable(Exception):
    """The request did not get an answer (DNS, connection, TLS, timeout)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: status, JSON body ({} when not JSON), the collector's clock, and when we sent and got it."""

    status: int
    body: dict[str, Any]
    text: str
    server_time: float | None
    sent: float
    received: float
    code: str = field(default="")

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    @property
    def reason(self) -> str:
        """The collector's message, or the start of the body."""
        return str(self.body.get("message") or self.body.get("error") or self.text[:200])


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
    """One signed request to `url + path`; CollectorUnreachable when no answer came."""
    body = dump(payload) if payload is not None else b""
    sent = clock()
    timestamp = int(sent + offset_s)
    headers = signing.sign_request(key, method, path, agent, timestamp, body).as_dict()
    headers[HEADER_CLOCK_OFFSET] = f"{offset_s:.3f}"
    if payload is not None:
        headers["Content-Type"] = JSON_TYPE
    try:
        async with session.request(
            method, url.rstrip("/") + path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=limit_s)
        ) as response:
            text = await response.text()
            status = response.status
            server_time = response.headers.get(signing.HEADER_SERVER_TIME)
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
        raise CollectorUnreachable(f"cannot reach the collector at {url}: {exc or type(exc).__name__}") from None
    received = clock()
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        parsed = {}
    data = parsed if isinstance(parsed, dict) else {}
    try:
        server = float(server_time) if server_time is not None else None
    except ValueError:
        server = None
    return Reply(status, data, text, server, sent, received, str(data.get("error") or ""))
