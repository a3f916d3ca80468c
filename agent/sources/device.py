"""Per-device transports: one task per device under `keep_running`, the base class they share, and arrival times.

Every pulling transport (serial, modbus, mqtt, http_poll, csv_dir) runs one task per device
(or per shared bus) under `keep_running`: the task connects and reads until the device goes
away, then waits a growing, jittered delay (sources/backoff.py) and tries again, for ever,
until the agent stops. One device's failure therefore never touches another's task, and a
fleet of gateways that lost the same broker does not reconnect in lockstep.

A connection that opens is not yet a healthy one: a flapping device (a loose USB cable, a
broker that accepts then drops us, a converter that hangs up at once) would otherwise reset
the delay on every connect and be hammered at the shortest delay for ever. So the delay starts
again from its first value only after a session that proved itself: a frame arrived during it,
or it stayed up for `stable_after` seconds. Any shorter session keeps the delay growing to its
ceiling.

`DeviceTransport` is that scaffolding once: a transport says what one of its devices is
(`device`, or `connections` when several sources share one bus) and what one session with a
device does (`session`); starting, stopping, building from the config and a rate-limited log
for what a device repeats are the base's. `Device` is one configured source: its intake and
options, its reconnect backoff, and its frames' arrival times, strictly increasing (`stamp`)
so that two frames read in one chunk stay two readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, Intake, NotStored, SourceError, SourceHealth, Taken, now_ms

from footfall.logs import RateLimitedLog, event

log = logging.getLogger("footfall.agent.sources")
Options = TypeVar("Options")


class Connection(Protocol):
    """What one reconnecting task serves: a device, or a bus shared by several."""

    @property
    def name(self) -> str:
        """How logs name it."""
        ...

    @property
    def healths(self) -> list[SourceHealth]:
        """The health of every source it serves."""
        ...

    @property
    def backoff(self) -> Backoff:
        """Its reconnect delays."""
        ...

    @property
    def what(self) -> str:
        """What it connects to, as a message says it ("serial port /dev/ttyUSB0")."""
        ...


C = TypeVar("C", bound=Connection)


@dataclass(slots=True, eq=False)
class Device(Generic[Options]):
    """One configured source of a pulling transport, and its running state."""

    intake: Intake
    options: Options
    backoff: Backoff
    last_ms: int = field(default=0, kw_only=True)

    @property
    def name(self) -> str:
        """The source's name."""
        return self.intake.name

    @property
    def healths(self) -> list[SourceHealth]:
        """The source's health."""
        return [self.intake.health]

    def stamp(self) -> int:
        """A frame's arrival time: now, but strictly after the previous frame's."""
        self.last_ms = max(now_ms(), self.last_ms + 1)
        return self.last_ms

    async def deliver(self, frame: Frame) -> Taken:
        """Hand a frame to the intake until it is stored (retried with backoff meanwhile); FrameRefused propagates.

        A device that does not wait for an answer (a serial line) or that would only send the
        frame again (MQTT) loses nothing while the buffer cannot commit: its later frames wait.
        """
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                return await self.intake(frame)
            except NotStored:
                await asyncio.sleep(backoff.next())


def options_of(intake: Intake, kind: type[Options], transport: str) -> Options:
    """A source's transport options, which must be `kind` (a source handed to another transport is a bug)."""
    options = intake.options
    if not isinstance(options, kind):
        raise TypeError(f"source {intake.name!r} is not a {transport} source")
    return options


class DeviceTransport(ABC, Generic[C]):
    """Every source of one pulling transport: one task per connection under `keep_running`, stopped together."""

    # Names the tasks: footfall-<kind>:<connection>.
    kind: ClassVar[str]
    # The transport's own logger.
    logger: ClassVar[logging.Logger]

    def __init__(self, intakes: Sequence[Intake]) -> None:
        self.devices: list[C] = self.connections(intakes)
        self._tasks: list[asyncio.Task[None]] = []
        # What a device can repeat without end (garbage, refused messages): one line a minute per source.
        self.repeated = RateLimitedLog(self.logger, every=60.0)

    @classmethod
    def from_config(cls, config: object, intakes: Sequence[Intake], /) -> Self:
        """The transport for these sources (each source's options say all it needs)."""
        return cls(intakes)

    def connections(self, intakes: Sequence[Intake]) -> list[C]:
        """What to keep a task for: one per source (a transport whose sources share a bus says otherwise)."""
        return [self.device(intake) for intake in intakes]

    def device(self, intake: Intake) -> C:
        """The running state of one source (for transports with one connection per source)."""
        raise NotImplementedError(f"{type(self).__name__} keeps one connection per bus, not per source")

    @abstractmethod
    async def session(self, connection: C) -> None:
        """Connect, then read until the device goes away (SourceError or OSError says why)."""

    async def start(self) -> None:
        """One task per connection; a device that is missing now is retried, not fatal."""
        for connection in self.devices:
            self._tasks.append(
                asyncio.create_task(
                    keep_running(
                        connection.name,
                        functools.partial(self.session, connection),
                        connection.healths,
                        connection.backoff,
                        what=connection.what,
                    ),
                    name=f"footfall-{self.kind}:{connection.name}",
                )
            )

    async def stop(self) -> None:
        """Stop every task; a frame being committed finishes first."""
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks)


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
