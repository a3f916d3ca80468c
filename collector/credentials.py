"""Secrets the collector hands out, and how it recognises them without keeping them.

Enrollment tokens (`ffe_…`) and API keys (`ffk_…`) are 256 random bits from `secrets`, shown
once when created. The database keeps only their SHA-256 and a short prefix to recognise
them in a list: a leaked database admits nobody. SHA-256 without salt or stretching is right
here because the secrets are random, not passwords: there is nothing to guess.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

TOKEN_PREFIX = "ffe_"
API_KEY_PREFIX = "ffk_"
AGENT_PREFIX = "agt_"
_SHOWN = 8  # characters after the type prefix kept for display


def new_enrollment_token() -> str:
    """A fresh enrollment token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A fresh API key."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_agent_id() -> str:
    """`agt_` and 20 lowercase base32 characters (100 random bits): fits in URLs, logs and file names."""
    return AGENT_PREFIX + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]


def digest(secret: str) -> bytes:
    """What the database stores for a token or key."""
    return hashlib.sha256(secret.encode()).digest()


def display_prefix(secret: str) -> str:
    """The start of a secret, enough to tell it apart in a list, far too little to use: `ffk_AbCd1234`."""
    return secret[: len(TOKEN_PREFIX) + _SHOWN]
