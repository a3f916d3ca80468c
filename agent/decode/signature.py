"""Webhook authenticity: a profile's `[signature] scheme` checked against the source's `secret`.

A POS webhook that anyone on the network could forge would let them invent sales, so a profile
that declares a scheme is only usable by a source with a `secret`, and every frame is checked
before it is decoded. A frame that fails is refused with `SignatureError` (http_push answers
401) and nothing of it is stored. Comparisons are constant-time; neither the secret nor the
expected signature ever appears in a message or a log.

The schemes (each reads the request's headers, by lower-case name, and the URL it was sent to):

- `square`: `X-Square-HmacSha256-Signature` is base64(HMAC-SHA256(signature key, notification
  URL + body)). The URL is the one registered with Square, which a proxy in front of the agent
  may change: the source's `public_url` gives it, otherwise the URL the request arrived at.
- `lightspeed`: `X-Signature: signature=<digest>,algorithm=HMAC-SHA256`, HMAC-SHA256 of the
  request body with the application's client secret. Lightspeed's documentation says "hashing
  the webhook request body" without naming the encoding, and the body is a form whose
  `payload` field is the JSON; so the digest is accepted in hex or base64, over the raw body or
  over the decoded `payload` field. Every reading still needs the secret.
- `hmac-sha256`: a generic one, for integrations of your own: the profile's `header` carries
  HMAC-SHA256(secret, body) in hex or base64, optionally prefixed `sha256=`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from footfall.agent.decode.errors import DecodeError


class SignatureError(DecodeError):
    """A webhook whose signature is missing or wrong: not from the sender it claims (HTTP 401)."""


def _digest(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _decodings(text: str) -> list[bytes]:
    """What a signature's text may stand for: hex, standard or URL-safe base64."""
    out: list[bytes] = []
    cleaned = text.strip()
    with contextlib.suppress(ValueError):
        out.append(bytes.fromhex(cleaned))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(decode(cleaned + "=" * (-len(cleaned) % 4)))
    return out


def _any_match(given: Iterable[bytes], expected: Iterable[bytes]) -> bool:
    matched = False
    wanted = list(expected)
    for candidate in given:
        for digest in wanted:
            # No early exit: every pair is compared, in constant time each.
            matched |= hmac.compare_digest(candidate, digest)
    return matched


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise SignatureError(f"the request has no {name} header; it is not signed as this adapter expects")
    return value


def _square(options: Any, payload: bytes, headers: Mapping[str, str], secret: str, url: str) -> None:
    given = _required(headers, "X-Square-HmacSha256-Signature")
    if not _any_match(_decodings(given), [_digest(secret, url.encode("utf-8") + payload)]):
        raise SignatureError(
            "X-Square-HmacSha256-Signature does not match: check the source's secret (the subscription's "
            f"signature key) and public_url (the notification URL; checked against {url!r})"
        )


def _lightspeed(options: Any, payload: bytes, headers: Mapping[str, str], secret: str, url: str) -> None:
    given = _required(headers, "X-Signature")
    parts = dict(
        (k.strip().lower(), v.strip()) for k, _, v in (p.partition("=") for p in given.split(",")) if k.strip()
    )
    algorithm = parts.get("algorithm", "HMAC-SHA256")
    if algorithm.upper() != "HMAC-SHA256" or not parts.get("signature"):
        raise SignatureError(f"X-Signature must be signature=...,algorithm=HMAC-SHA256, got algorithm {algorithm!r}")
    messages = [payload]
    try:
        fields = dict(parse_qsl(payload.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        fields = {}
    if "payload" in fields:
        messages.append(fields["payload"].encode("utf-8"))
    if not _any_match(_decodings(parts["signature"]), [_digest(secret, m) for m in messages]):
        raise SignatureError("X-Signature does not match the body: check the source's secret (the app's client secret)")


def _generic(options: Any, payload: bytes, headers: Mapping[str, str], secret: str, url: str) -> None:
    name = str(getattr(options, "header", ""))
    given = _required(headers, name)
    if given.lower().startswith("sha256="):
        given = given[7:]
    if not _any_match(_decodings(given), [_digest(secret, payload)]):
        raise SignatureError(f"{name} does not match the body signed with the source's secret")


Verifier = Callable[[Any, bytes, Mapping[str, str], str, str], None]
# Scheme name -> its check(options, body, headers, secret, url); raises SignatureError.
SIGNATURE_SCHEMES: Mapping[str, Verifier] = {
    "square": _square,
    "lightspeed": _lightspeed,
    "hmac-sha256": _generic,
}


def verify(section: Any, payload: bytes, headers: Mapping[str, str], secret: str, url: str = "") -> None:
    """Check a request against the profile's `[signature]`; SignatureError when it does not hold.

    `headers` by lower-case name; `url`: the one the sender signs (the source's `public_url`, else
    the URL the request arrived at).
    """
    if not secret:
        raise SignatureError("this adapter's webhooks are signed and the source has no secret to check them")
    SIGNATURE_SCHEMES[section.scheme](section, payload, headers, secret, url)
