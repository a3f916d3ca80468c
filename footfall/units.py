"""Human units in config files and CLI flags: durations like "15m" and sizes like "512MB"."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string such as "250ms", "30s", "15m", "24h", "7d"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s or 15m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"expected a duration such as 250ms, 30s, 15m, 24h or 7d, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(value: str | int) -> int:
    """Bytes from an integer (bytes) or a string such as "512MB", "64KiB", "2GB"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 512MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"expected a size such as 64KiB, 512MB or 2GB, got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


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


def format_size(size: int) -> str:
    """Bytes in the units config files use: 512 bytes, 64 KiB, 4 MiB, 150.0 MiB, 1 GiB."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size // scale} {unit}" if size % scale == 0 else f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
