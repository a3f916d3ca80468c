"""The checks of `POST /v1/ingest`, in SPEC.md section 6's order, cheapest and least trusting first.

1. the content type (415 `unsupported_media_type`);
2. the signing headers (401 `missing_signature`);
3. the agent is enrolled and active: the caller looks up its key (401 `unknown_agent`, `revoked_agent`);
4. the request timestamp is inside the window (401 `timestamp_out_of_window`);
5. only now the body: the caller reads it with its limit (413 `batch_too_large`), so a request
   nobody signed costs its headers only;
6. the Ed25519 signature over the exact body (401 `bad_signature`);
7. the body decodes to a valid batch whose records keep the protocol's bounds against the
   receiver's clock (400 `malformed_batch`, 413 `batch_too_large`), and the envelope's agent is
   the signer (400 `agent_mismatch`).

Steps 3 and 5 are the reader's I/O, so `signed_batch_steps` is a generator, as psycopg's are:
it yields what it needs (`NeedKey`, `NeedBody`), the caller sends it in, and it returns the
opened batch or raises the ProtocolError naming the first check that failed. `advance` takes
one step and hands back the next need or the opened batch (a generator's StopIteration cannot
cross a thread). Every step after the body is in hashes, verifies or decodes it: a caller on an
event loop runs those in a worker thread. `open_signed_batch` drives the same steps for a
caller that already holds the body and keeps no key cache (a test peer). Pure: no I/O, no clock
of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass

from .envelope import CONTENT_TYPE, Batch, decode_body
from .errors import BadSignature, MalformedBatch, UnsupportedMediaType
from .signing import DEFAULT_WINDOW_S, SignedHeaders, check_timestamp, read_headers, verify_request

INGEST_PATH = "/v1/ingest"


@dataclass(frozen=True, slots=True)
class NeedKey:
    """Send the agent's raw public key, or raise AuthError (`unknown_agent`, `revoked_agent`).

    `again`: the key sent before did not verify the signature. A reader that caches keys sends
    the key re-read from its source of truth (the agent may have rotated it since), or None when
    the key it sent was read from there already; the signature is then refused.
    """

    agent: str
    again: bool = False


@dataclass(frozen=True, slots=True)
class NeedBody:
    """Send the request body, read within the reader's size limit."""


@dataclass(frozen=True, slots=True)
class Opened:
    """A request that passed every check: who signed it, with which key, and the batch it carries."""

    signed: SignedHeaders
    key: bytes
    batch: Batch


Step = NeedKey | NeedBody
Steps = Generator[Step, bytes | None, Opened]


def signed_batch_steps(
    headers: Mapping[str, str], method: str, path: str, now: float, window_s: int = DEFAULT_WINDOW_S
) -> Steps:
    """The checks of one ingest request, in order (see the module docstring); `now` is the reader's clock.

    `headers` is a case-insensitive mapping (an HTTP server's request headers).
    """
    media = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != CONTENT_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {CONTENT_TYPE}, got {media!r}")
    signed = read_headers(headers)
    key = _given((yield NeedKey(signed.agent)), "NeedKey")
    check_timestamp(signed.timestamp, now, window_s)
    body = _given((yield NeedBody()), "NeedBody")
    refused = _signature_problem(key, method, path, signed, body)
    if refused is not None:
        fresher = yield NeedKey(signed.agent, again=True)
        if fresher is None or fresher == key:
            raise refused
        key = fresher
        verify_request(key, method, path, signed, body)
    batch = decode_body(body, now_ms=int(now * 1000))
    if batch.agent != signed.agent:
        raise MalformedBatch(
            f"the batch says it is from {batch.agent!r} but the request is signed by {signed.agent!r}",
            code="agent_mismatch",
        )
    return Opened(signed, key, batch)


def open_signed_batch(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    public_key: Callable[[str], bytes],
    now: float,
    window_s: int = DEFAULT_WINDOW_S,
) -> Opened:
    """Every check at once, for a reader holding the body: `public_key(agent)` gives the key or raises AuthError."""
    steps = signed_batch_steps(headers, method, path, now, window_s)
    step = advance(steps, None)
    while not isinstance(step, Opened):
        if isinstance(step, NeedBody):
            step = advance(steps, body)
        else:
            step = advance(steps, None if step.again else public_key(step.agent))
    return step


def advance(steps: Steps, answer: bytes | None) -> Step | Opened:
    """Send `answer` to the step waiting for it (None to start): the next need, or the opened batch at the end."""
    try:
        return steps.send(answer)
    except StopIteration as done:
        return done.value


def _signature_problem(key: bytes, method: str, path: str, signed: SignedHeaders, body: bytes) -> BadSignature | None:
    try:
        verify_request(key, method, path, signed, body)
    except BadSignature as exc:
        return exc
    return None


def _given(value: bytes | None, step: str) -> bytes:
    if value is None:
        raise TypeError(f"{step} must be answered with bytes, not None")
    return value
