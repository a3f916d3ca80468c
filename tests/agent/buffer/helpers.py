"""What the buffer's tests share: distinct readings, the seqs gap events cover, clocks of a gateway."""

from __future__ import annotations

import time
from collections.abc import Callable

from footfall.agent.clock import Stamp
from footfall.protocol.records import Count, Record, SensorEvent


def count(i: int, sensor: str = "door") -> Count:
    """A distinct interval count."""
    return Count(sensor, "main", 1_000_000 + i * 60_000, 1_000_000 + (i + 1) * 60_000, i % 7, i % 3)


def covered(records: list[Record]) -> set[int]:
    """Every seq the gap events among `records` report lost."""
    out: set[int] = set()
    for r in records:
        if isinstance(r, SensorEvent) and r.kind == "gap":
            out.update(range(r.lost_first, r.lost_last + 1))
    return out


def just_booted(uptime_s: float = 5.0) -> Callable[[], float]:
    """A monotonic clock as on a gateway that booted `uptime_s` ago (whatever this machine's uptime)."""
    booted = time.monotonic() - uptime_s
    return lambda: time.monotonic() - booted


def untrusted_stamps() -> Stamp:
    """The agent's clock as on a gateway without NTP whose time the collector has not confirmed."""
    now = time.time()
    return Stamp(wall_ms=int(now * 1000), mono_ms=int(time.monotonic() * 1000), boot_id="boot-a", trusted=False)
