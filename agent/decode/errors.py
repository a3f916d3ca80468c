"""What a frame that does not match its profile raises, and how an error message quotes a device's value.

Every module of decode/ (and each wire format) raises `DecodeError`; it is the one thing most
of them need from the others, so it stands alone and imports nothing.
"""

from __future__ import annotations

import json
from typing import Any


class DecodeError(ValueError):
    """A frame that does not match its profile; the message names the item and the field."""


def show(raw: Any) -> str:
    """A value as an error message quotes it, cut to 60 characters."""
    try:
        text = json.dumps(raw) if not isinstance(raw, bytes) else repr(raw)
    except (TypeError, ValueError):
        text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."
