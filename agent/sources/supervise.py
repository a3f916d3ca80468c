"""What keeps a device's transport running: reconnect with backoff and jitter, and rate-limited logs.

Every pulling transport (serial, modbus, mqtt, http_poll, csv_dir) runs one task per device
(or per shared bus) under `keep_running`: the task connects and reads until the device goes
away, then waits a growing, jittered delay and tries again, for ever, until the agent stops.
One device's failure therefore never touches another's task, and a fleet of gateways that
lost the same broker does not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from footfall.agent.sources.base import SourceError, SourceHealth

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources")


@dataclass(slots=True)
class Backoff:
    """Delays that double from `initial` up to `maximum`, each with up to half of it taken off at random."""

    initial: float = 1.0
    maximum: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        """The delay before the next attempt (and count this attempt)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # "Equal jitter": never less than half the ceiling, so a dead device is not hammered.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """The device answered: start again from `initial` next time."""
        self.attempt = 0


class RateLimitedLog:
    """Logs an event at most once per `every` seconds per key, with how many were suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, name: str, level: int = logging.WARNING, *, key: str = "", **fields: object) -> None:
        """Log `name` unless the same (name, key) was logged less than `every` seconds ago."""
        slot = f"{name}\x1f{key}"
        now = self._clock()
        if now - self._last.get(slot, -self._every - 1) < self._every:
            self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
            return
        self._last[slot] = now
        suppressed = self._suppressed.pop(slot, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        event(self._log, name, level, **fields)


def now_ms() -> int:
    """Wall-clock milliseconds, for health timestamps."""
    return int(time.time() * 1000)


async def keep_running(
    name: str,
    session: Callable[[], Awaitable[None]],
    healths: list[SourceHealth],
    backoff: Backoff,
    *,
    what: str = "device",
) -> None:
    """Run `session` (connect, then read until the device goes away) again and again, with backoff.

    `session` raises SourceError (or OSError) when the device is unreachable or lost; it calls
    `backoff.reset()` itself once the device has answered. Cancel the task to stop.
    """
    while True:
        try:
            await session()
            message = f"{what} closed the connection"
        except (SourceError, OSError) as exc:
            message = str(exc) or type(exc).__name__
        # Reason: a bug in one device's session must not end its retries silently (nobody awaits
        # this task until the agent stops); it is logged with its traceback and retried like an outage.
        except Exception as exc:
            message = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("source_failed source=%s", name)
        delay = backoff.next()
        for health in healths:
            health.down(now_ms(), message)
        event(log, "source_down", logging.WARNING, source=name, error=message, retry_in_s=round(delay, 2))
        await asyncio.sleep(delay)
