"""Human units in config files and CLI flags: durations like "15m" and sizes like "512MB"."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
# Longer than anything is ever configured, and far inside what timedelta and PostgreSQL's interval can hold.
MAX_DURATION_S = 100 * 365 * 86400
# What a signed 64-bit integer (and PostgreSQL's bigint) holds.
MAX_SIZE = 2**63 - 1


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string such as "250ms", "30s", "15m", "24h", "7d".

    ValueError for anything else, and for a negative, non-finite or longer than MAX_DURATION_S one.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s or 15m, got {value!r}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        seconds = value  # compared before float(): an int too big for a float raises OverflowError
    else:
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"expected a duration such as 250ms, 30s, 15m, 24h or 7d, got {_shown(value)}")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be at most {format_duration(MAX_DURATION_S)} (100 years), "
                         f"got {_shown(value)}")
    return float(seconds)


def parse_size(value: str | int) -> int:
    """Bytes from an integer (bytes) or a string such as "512MB", "64KiB", "2GB"; at most MAX_SIZE."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        size: float = value
    else:
        match = _SIZE.fullmatch(value)
        if not match:
            raise ValueError(f"expected a size such as 64KiB, 512MB or 2GB, got {_shown(value)}")
        size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
    if size > MAX_SIZE:
        raise ValueError(f"a size must be at most {MAX_SIZE} bytes, got {_shown(value)}")
    return int(size)


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 12m, 3h 5m, 2d 4h."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def _shown(value: object) -> str:
    """A value for an error message, cut short: what a caller sent may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"
