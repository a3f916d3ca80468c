"""What keeps a device's transport running: reconnect with backoff and jitter, and rate-limited logs.

Every pulling transport (serial, modbus, mqtt, http_poll, csv_dir) runs one task per device
(or per shared bus) under `keep_running`: the task connects and reads until the device goes
away, then waits a growing, jittered delay and tries again, for ever, until the agent stops.
One device's failure therefore never touches another's task, and a fleet of gateways that
lost the same broker does not reconnect in lockstep.

A connection that opens is not yet a healthy one: a flapping device (a loose USB cable, a
broker that accepts then drops us, a converter that hangs up at once) would otherwise reset
the delay on every connect and be hammered at the shortest delay for ever. So the delay starts
again from its first value only after a session that proved itself: a frame arrived during it,
or it stayed up for `stable_after` seconds. Any shorter session keeps the delay growing to its
ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from footfall.agent.config.transports import DeviceOptions
from footfall.agent.sources.base import SourceError, SourceHealth

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources")


@dataclass(slots=True)
class Backoff:
    """Delays that double from `initial` up to `maximum`, each with up to half of it taken off at random.

    `stable_after`: how long a session must stay up (without a frame) before `keep_running`
    counts it as healthy and starts the delays again from `initial`.
    """

    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def of(cls, options: DeviceOptions) -> Backoff:
        """The backoff a device's `reconnect_min`, `reconnect_max` and `stable_after` keys ask for."""
        return cls(options.reconnect_min, options.reconnect_max, stable_after=options.stable_after)

    def next(self) -> float:
        """The delay before the next attempt (and count this attempt)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # "Equal jitter": never less than half the ceiling, so a dead device is not hammered.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """The device proved healthy: start again from `initial` next time."""
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


async def stop_tasks(tasks: Sequence[asyncio.Task[Any]], *, every: float = 5.0) -> None:
    """Cancel `tasks` and wait until each has ended, cancelling again every `every` seconds meanwhile.

    One cancel() is not always enough: Python 3.11's asyncio.wait_for can swallow a
    cancellation that arrives just as its inner future completes (fixed in 3.12), and a library
    awaiting through it (pymodbus does, for every request) then keeps the cancelled task
    polling, so that waiting for it once would hang the agent's stop for ever. The pause is
    long enough for a frame's commit, which a source waits for after its first cancel.
    Exceptions other than the cancellation propagate, as awaiting the task would.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every)
        if pending:
            event(log, "source_task_still_running", logging.WARNING, tasks=len(pending),
                  hint="cancelled again: a library swallowed the first cancellation")
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


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

    `session` raises SourceError (or OSError) when the device is unreachable or lost. The delay
    starts again from its first value only after a healthy session: one during which a frame
    reached any of `healths` (their `received` grew), or that lasted `backoff.stable_after`
    seconds. Cancel the task to stop.
    """
    loop = asyncio.get_running_loop()
    while True:
        received = sum(h.received for h in healths)
        started = loop.time()
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
        if sum(h.received for h in healths) > received or loop.time() - started >= backoff.stable_after:
            backoff.reset()
        delay = backoff.next()
        for health in healths:
            health.down(now_ms(), message)
        event(log, "source_down", logging.WARNING, source=name, error=message, retry_in_s=round(delay, 2))
        await asyncio.sleep(delay)
