"""systemd supervision: `sd_notify` over `$NOTIFY_SOCKET`, and a watchdog that pings only while the agent progresses.

The unit (packaging/systemd/footfall-agent.service) says `Type=notify` and `WatchdogSec=`.
systemd then passes `NOTIFY_SOCKET` (a unix datagram socket; a leading `@` means the
abstract namespace) and `WATCHDOG_USEC`. The protocol is one datagram of `KEY=value` lines
(sd_notify(3)); it is small enough to speak here rather than depend on libsystemd:
`READY=1` once the agent serves, `STATUS=...` with a one-line summary, `WATCHDOG=1` as a
sign of life, `STOPPING=1` on the way out. Outside systemd every call is a no-op.

Progress, which earns a `WATCHDOG=1` (sent every third of `WatchdogSec`, so one missed round
is tolerated and two are not):
1. the event loop runs: the pinger is a coroutine on the agent's own loop, never a thread,
   so a loop stuck in a blocking call cannot ping;
2. the buffer's writer thread answers a trivial read within a ping period (a hung fsync or
   a wedged SQLite call stops the pings);
3. every long-running task of the pipeline (uploader, clock keeper, status writer, source
   supervisors) is still running;
4. no upload has been in flight for longer than its request timeout plus a margin (the
   HTTP client enforces the timeout; outliving it means something hangs).
When any of them fails, the agent withholds the ping, says why in `STATUS=` and the log,
and systemd kills and restarts it after `WatchdogSec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from footfall.logs import event

log = logging.getLogger("footfall.agent.systemd")


class Notifier:
    """Sends sd_notify datagrams to `$NOTIFY_SOCKET`; does nothing when it is not set."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + path[1:]) if path.startswith("@") else path
        self._sock: socket.socket | None = None
        self.sent = 0

    @property
    def enabled(self) -> bool:
        """Whether systemd (or a stand-in) listens."""
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram; False (logged) when it could not be sent."""
        if not self.address:
            return False
        data = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            event(log, "sd_notify_failed", logging.WARNING, socket=self.address.replace("\0", "@"), error=str(exc))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """`WatchdogSec` in seconds when systemd asks this process for pings, else None."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


Probe = Callable[[], Awaitable[str | None] | str | None]


@dataclass(slots=True)
class WatchdogState:
    """What `status` shows about the watchdog."""

    interval_s: float = 0.0
    pings: int = 0
    withheld: int = 0
    last_ping_ms: int = 0
    problems: list[str] = field(default_factory=list)
    worst_loop_lag_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "interval_s": self.interval_s,
            "pings": self.pings,
            "withheld": self.withheld,
            "last_ping_ms": self.last_ping_ms,
            "problems": list(self.problems),
            "worst_loop_lag_s": round(self.worst_loop_lag_s, 3),
        }


class Watchdog:
    """Pings `WATCHDOG=1` every `interval / 3` while every probe passes (see the module docstring)."""

    def __init__(self, notifier: Notifier, interval: float, probes: Mapping[str, Probe]) -> None:
        self.notifier = notifier
        self.interval = interval
        self.period = interval / 3
        self.probes = dict(probes)
        self.state = WatchdogState(interval_s=interval)

    async def run(self) -> None:
        """Check and ping for ever (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.period
            await asyncio.sleep(self.period)
            # How late the loop woke us: reported, since a stuck loop could not have pinged at all.
            self.state.worst_loop_lag_s = max(self.state.worst_loop_lag_s, loop.time() - expected)
            problems = await self.check()
            if problems:
                self.state.withheld += 1
                if problems != self.state.problems:
                    event(log, "watchdog_withheld", logging.ERROR, problems="; ".join(problems),
                          hint="systemd restarts the agent if this lasts")
                self.notifier.send("STATUS=not progressing: " + "; ".join(problems))
            else:
                self.notifier.send("WATCHDOG=1")
                self.state.pings += 1
                self.state.last_ping_ms = int(time.time() * 1000)
            self.state.problems = problems

    async def check(self) -> list[str]:
        """Every failing probe's complaint (empty: the agent progresses)."""
        problems: list[str] = []
        for name, probe in self.probes.items():
            try:
                outcome = probe()
                if isinstance(outcome, Awaitable):
                    outcome = await asyncio.wait_for(_awaited(outcome), self.period)
            except TimeoutError:
                outcome = f"no answer within {self.period:.1f} s"
            if outcome:
                problems.append(f"{name}: {outcome}")
        return problems


async def _awaited(outcome: Awaitable[str | None]) -> str | None:
    return await outcome


def task_alive(task: asyncio.Task[Any]) -> str | None:
    """A probe: None while `task` runs, else why it stopped."""
    if not task.done():
        return None
    if task.cancelled():
        return "cancelled"
    with contextlib.suppress(asyncio.CancelledError):
        error = task.exception()
        return f"stopped: {error!r}" if error else "stopped"
    return "stopped"
