"""Cursor pagination for list endpoints: `?limit=N&cursor=...`, answered with `next_cursor` (null on the last page).

A cursor is opaque to clients (base64 of the last item's sort key), so a list stays stable while
items are added, unlike an offset.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from footfall.protocol.strict_json import JsonRefused, loads

from ..errors import BadRequest
from ..http import whole_number

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Cursors this collector gives are a few dozen bytes; anything much longer is not one of them.
MAX_CURSOR = 2048
MAX_ID = 2**63 - 1
MAX_KEY_TEXT = 256

# A list's sort key: an id (outages) or a name (sites, sensors).
Key = TypeVar("Key", int, str)


def page_params(params: Mapping[str, str], key: type[Key]) -> tuple[int, Key | None]:
    """(limit, the cursor's sort key or None); 400 `bad_parameter` or `bad_cursor`.

    The key must be of the list's `key` type (`true` is not an id, though Python's bool is an int).
    """
    limit = whole_number(params.get("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT)
    cursor = params.get("cursor")
    if not cursor:
        return limit, None
    after = _after(cursor)
    if isinstance(after, key) and not isinstance(after, bool) and _in_range(after):
        return limit, after
    raise BadRequest("cursor is not one this collector gave; start again without it", code="bad_cursor")


def _in_range(after: int | str) -> bool:
    return 1 <= after <= MAX_ID if isinstance(after, int) else 1 <= len(after) <= MAX_KEY_TEXT


def _after(cursor: str) -> object:
    """The sort key a cursor holds; None when it is not a cursor at all."""
    if len(cursor) > MAX_CURSOR or not cursor.isascii():
        return None
    try:
        data = loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), max_bytes=MAX_CURSOR)
    except (binascii.Error, JsonRefused):
        return None
    return data.get("after") if isinstance(data, dict) else None


def next_cursor(items: list[Any], limit: int, key: Any) -> str | None:
    """The cursor after the last of `items` when the page is full, else None."""
    if len(items) < limit:
        return None
    raw = json.dumps({"after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
