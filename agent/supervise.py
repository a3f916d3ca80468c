"""Keeping a failing source from taking anything else down with it.

A source whose device is missing (a USB adapter not plugged in yet, a port another program
holds, a Modbus gateway that is down) must not stop the agent: the other sources keep
taking readings and the uploader keeps draining the buffer. So the pipeline tries each
transport's `start()` once; if that fails with a retryable `SourceError`, a supervisor task
tries again after `[agent] source_backoff_initial`, doubling each time up to
`source_backoff_max`, with a little jitter so that a store's devices that failed together
do not retry in lockstep. Each wait is an `asyncio.sleep` on the shared loop: a failing
source costs one short attempt per period, never a busy loop, and never holds the buffer.
Each attempt has a time limit (`START_TIMEOUT_S`): a start that hangs counts as a failure.
A non-retryable `SourceError` (a configuration that can never work) stops the agent at start,
with the message, as before.

The schedule is `Backoff`, the same one each transport's own reconnect loop uses once it has
started (agent/sources/backoff.py, agent/sources/device.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Source, SourceError, SourceHealth

from footfall.logs import event

log = logging.getLogger("footfall.agent.supervise")
START_TIMEOUT_S = 30.0


@dataclass(slots=True)
class SupervisorState:
    """What `status` shows about a supervised transport."""

    transport: str
    state: str = "starting"  # starting, running, retrying
    attempts: int = 0
    last_error: str = ""
    next_attempt_ms: int = 0
    delays: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the last few delays only)."""
        return {
            "transport": self.transport,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "next_attempt_ms": self.next_attempt_ms,
            "recent_delays_s": [round(d, 3) for d in self.delays[-5:]],
        }


class SourceSupervisor:
    """Starts one transport, retrying with backoff while it fails; `await start_once()`, then `run()` if needed."""

    def __init__(
        self,
        transport: str,
        source: Source,
        healths: Sequence[SourceHealth],
        *,
        initial: float,
        ceiling: float,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.healths = list(healths)
        self.backoff = Backoff(initial, max(ceiling, initial), rng=rng or random.Random())
        self.state = SupervisorState(transport)
        self._clock = clock
        self._down_error = ""

    @property
    def running(self) -> bool:
        """Whether the transport has started."""
        return self.state.state == "running"

    async def start_once(self) -> bool:
        """One attempt; True if the transport runs. A non-retryable SourceError propagates."""
        self.state.attempts += 1
        try:
            await asyncio.wait_for(self.source.start(), START_TIMEOUT_S)
        except TimeoutError:
            await self.source.stop()
            return self._failed(f"start did not finish within {START_TIMEOUT_S:.0f} s")
        except SourceError as exc:
            if not exc.retryable:
                raise
            await self.source.stop()
            return self._failed(str(exc))
        self.state.state = "running"
        self.state.last_error = ""
        self.state.next_attempt_ms = 0
        self.backoff.reset()
        # Clear only the down state this supervisor set: a transport's own tasks may already have
        # found a device missing (a serial source starts fine with its adapter unplugged).
        for health in self.healths:
            if health.state == "down" and health.last_error == self._down_error:
                health.state = "ok"
        event(log, "source_started", transport=self.state.transport, attempts=self.state.attempts)
        return True

    async def run(self) -> None:
        """Retry until the transport starts (then return); cancelled when the agent stops."""
        while not self.running:
            delay = self.backoff.next()
            self.state.delays.append(delay)
            self.state.state = "retrying"
            self.state.next_attempt_ms = int((self._clock() + delay) * 1000)
            event(log, "source_retry", logging.WARNING, transport=self.state.transport, wait_s=round(delay, 3),
                  attempt=self.state.attempts + 1, error=self.state.last_error)
            await asyncio.sleep(delay)
            await self.start_once()

    def _failed(self, message: str) -> bool:
        self.state.state = "retrying"
        self.state.last_error = message
        now_ms = int(self._clock() * 1000)
        self._down_error = f"{message} (retrying)"
        for health in self.healths:
            health.failed(now_ms, "receiving", self._down_error, down=True)
        return False
