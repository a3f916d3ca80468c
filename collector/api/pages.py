"""Cursor pagination for list endpoints: `?limit=N&cursor=...`, answered with `next_cursor` (null on the last page).

A cursor is opaque to clients (base64 of the last item's sort key), so a list stays stable while
items are added, unlike an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def page_params(params: Mapping[str, str]) -> tuple[int, Any]:
    """(limit, the decoded cursor or None); 400 `bad_parameter` or `bad_cursor`."""
    text = params.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}", code="bad_parameter")
    cursor = params.get("cursor")
    if not cursor:
        return int(text), None
    try:
        return int(text), json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this collector gave; start again without it", code="bad_cursor") from None


def next_cursor(items: list[Any], limit: int, key: Any) -> str | None:
    """The cursor after the last of `items` when the page is full, else None."""
    if len(items) < limit:
        return None
    raw = json.dumps({"after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
