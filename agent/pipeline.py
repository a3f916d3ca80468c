"""The running agent: config -> profiles -> buffer -> sources -> uploader, as tasks under one loop.

`Pipeline` owns its registries as plain dicts (format extractors, transports, profiles), so
nothing is global and a test can build two pipelines side by side. `start` fails early and
clearly (a bad profile, an unusable port, an unsafe key); `stop` first stops the sources (no
new frames; requests in progress finish and get their commit), then the uploader (what it
had in flight stays buffered), then commits what is queued and closes the buffer.

While it runs, `status.json` in the state directory is rewritten atomically every few seconds
(and at start and stop); under systemd it is written to the runtime directory on tmpfs
(`RuntimeDirectory=`, `$RUNTIME_DIRECTORY`) and the state directory holds a symlink to it,
since rewriting a file every few seconds would be most of what the agent writes to flash.
`footfall agent status` reads it together with the buffer file opened read-only, so status
works whether or not the agent runs.

Life on a gateway (issue 7): the agent clock (agent/clock.py) is judged before the buffer
opens and again with what the buffer remembers, and a keeper task re-judges it every second
and re-stamps held readings once it is trusted; a transport that cannot start is retried by
a supervisor (agent/supervise.py) while everything else runs; under systemd the agent says
READY=1 once it serves, keeps STATUS= current, pings the watchdog only while it makes
progress (agent/systemd.py), and says STOPPING=1 on the way out. A buffer that SQLite finds
damaged while running stops the agent (exit 1); its restart moves the file aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent import clock as agent_clock
from footfall.agent.buffer import CLOCK_KEY, Buffer, BufferCorrupt, BufferError
from footfall.agent.clock import AgentClock, ClockSettings, ClockSource
from footfall.agent.config import AgentConfig, SourceConfig, date_ms
from footfall.agent.decode.extract import Extractor, default_extractors
from footfall.agent.decode.profile import Profile, load_profiles
from footfall.agent.identity import Identity, identity_path, load_identity, load_key
from footfall.agent.intake import SourceIntake
from footfall.agent.marks import read_marks
from footfall.agent.sources.base import Source
from footfall.agent.sources.http_push import HttpPushServer
from footfall.agent.supervise import SourceSupervisor
from footfall.agent.systemd import Notifier, Probe, Watchdog, task_alive, watchdog_interval
from footfall.agent.uploader import Uploader

from footfall import __version__
from footfall.logs import event

log = logging.getLogger("footfall.agent")

BUFFER_FILE = "buffer.sqlite"
STATUS_FILE = "status.json"
STATUS_EVERY_S = 2.0


class TransportFactory(Protocol):
    """Builds the running Source that serves every configured source of one transport."""

    def from_config(self, config: AgentConfig, intakes: Sequence[SourceIntake], /) -> Source:
        """The transport for these sources."""
        ...


def default_transports() -> dict[str, TransportFactory]:
    """Transport name -> the class that runs it (its `from_config` builds one for all its sources)."""
    return {"http_push": HttpPushServer}


class Pipeline:
    """One agent: build with a config, `await start()`, later `await stop()` (or `await run(stop_event)`)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        clock_source: ClockSource | None = None,
        notifier: Notifier | None = None,
        runtime_dir: Path | None = None,
    ) -> None:
        self.config = config
        # Under systemd (RuntimeDirectory=footfall) status.json lives on tmpfs, not on the SD card.
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        self.runtime_dir = runtime_dir or (Path(runtime) if runtime else None)
        source = clock_source or ClockSource(wall=clock)
        self.clock = source.wall
        self.agent_clock = AgentClock(_clock_settings(config), source)
        self.notifier = notifier or Notifier()
        self.watchdog: Watchdog | None = None
        self.state_dir = config.agent.state_dir
        self.extractors: dict[str, Extractor] = default_extractors()
        self.transports: dict[str, TransportFactory] = default_transports()
        self.profiles: dict[str, Profile] = {}
        self.identity: Identity | None = None
        self.buffer = Buffer(
            self.state_dir / BUFFER_FILE,
            max_size=config.buffer.max_size,
            commit_interval=config.buffer.commit_interval,
            clock=self.clock,
            stamps=self.agent_clock.stamp,
        )
        self.intakes: list[SourceIntake] = []
        self.sources: dict[str, Source] = {}
        self.supervisors: dict[str, SourceSupervisor] = {}
        self.uploader: Uploader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_ms = 0

    @property
    def status_path(self) -> Path:
        """Where the status file is written: the runtime directory if there is one, else the state directory."""
        return (self.runtime_dir or self.state_dir) / STATUS_FILE

    def _link_status(self) -> None:
        """With a runtime directory, `<state_dir>/status.json` is a symlink to it, where `agent status` looks."""
        if self.runtime_dir is None:
            return
        link = self.state_dir / STATUS_FILE
        if link.is_symlink() and Path(os.readlink(link)) == self.status_path:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{STATUS_FILE}.link"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.status_path)
        os.replace(tmp, link)

    async def start(self) -> None:
        """Open everything; raises ConfigError, IdentityError, BufferError or SourceError with the reason."""
        self._started_ms = int(self.clock() * 1000)
        self.profiles = load_profiles(self.config.agent.adapter_dirs, extractors=self.extractors)
        uploader_key = self._load_identity()
        self._link_status()
        marks = read_marks(self.buffer.marks_path)
        self.agent_clock.start(wall_high_ms=marks.wall_high_ms if marks else 0)
        await self.buffer.open()
        try:
            stats = await self.buffer.stats()
            self.agent_clock.start(wall_high_ms=stats.wall_high_ms, saved=await self.buffer.get_state(CLOCK_KEY))
            self.intakes = [self._intake(source) for source in self.config.enabled_sources]
            by_transport: dict[str, list[SourceIntake]] = {}
            for intake in self.intakes:
                by_transport.setdefault(intake.source.transport, []).append(intake)
            for transport, intakes in by_transport.items():
                source = self.transports[transport].from_config(self.config, intakes)
                supervisor = SourceSupervisor(
                    transport,
                    source,
                    [intake.health for intake in intakes],
                    initial=self.config.agent.source_backoff_initial,
                    ceiling=self.config.agent.source_backoff_max,
                    clock=self.clock,
                )
                self.sources[transport] = source
                self.supervisors[transport] = supervisor
                if not await supervisor.start_once():
                    self._tasks.append(asyncio.create_task(supervisor.run(), name=f"footfall-supervise-{transport}"))
            if self.identity is not None and uploader_key is not None:
                self.uploader = Uploader(
                    self.buffer,
                    self.config.upload,
                    state_dir=self.state_dir,
                    identity=self.identity,
                    key=uploader_key,
                    collector_url=self.config.collector.url,
                    timeout=self.config.collector.timeout,
                    clock=self.clock,
                    on_server_time=self.agent_clock.observe_collector,
                )
                self._tasks.append(asyncio.create_task(self.uploader.run(), name="footfall-uploader"))
            self._tasks.append(
                asyncio.create_task(
                    agent_clock.keep(self.agent_clock, self.buffer, self._collector_url),
                    name="footfall-clock",
                )
            )
            self._tasks.append(asyncio.create_task(self._status_loop(), name="footfall-status"))
            self._start_watchdog()
        except BaseException:
            await self.stop()
            raise
        event(
            log,
            "agent_started",
            version=__version__,
            agent=self.identity.agent_id if self.identity else "",
            sources=len(self.intakes),
            state_dir=str(self.state_dir),
            clock=self.agent_clock.trust.reason,
        )
        self.notifier.send("READY=1", f"STATUS={self.summary()}")

    def _collector_url(self) -> str:
        return self.config.collector.url or (self.identity.collector_url if self.identity else "")

    def _start_watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        probes: dict[str, Probe] = {"buffer": self._buffer_answers}
        for task in list(self._tasks):
            probes[task.get_name()] = _task_probe(task)
        if self.uploader is not None:
            probes["upload"] = self.uploader.stuck
        self.watchdog = Watchdog(self.notifier, interval, probes)
        self._tasks.append(asyncio.create_task(self.watchdog.run(), name="footfall-watchdog"))

    async def _buffer_answers(self) -> str | None:
        await self.buffer.ping()
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until `stop` is set or a task fails, then stop cleanly."""
        await self.start()
        stopper = asyncio.create_task(stop.wait(), name="footfall-stop-wait")
        fatal = asyncio.create_task(self.buffer.fatal.wait(), name="footfall-buffer-fatal")
        try:
            while not stopper.done():
                watched = [t for t in self._tasks if not _ends_when_done(t)]
                done, _ = await asyncio.wait([stopper, fatal, *watched], return_when=asyncio.FIRST_COMPLETED)
                if fatal in done:
                    raise BufferCorrupt(
                        f"the buffer {self.buffer.path} is damaged ({self.buffer.fatal_reason}); restart the agent: "
                        "it moves the file aside and starts a fresh buffer"
                    )
                for task in done:
                    if task is stopper or _ends_when_done(task):
                        continue
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                    raise RuntimeError(f"the agent's task {task.get_name()} stopped unexpectedly")
        finally:
            for waiter in (stopper, fatal):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            await self.stop()

    async def stop(self) -> None:
        """Stop sources, then uploads, then flush and close the buffer; safe to call twice."""
        for task in self._tasks:
            if task.get_name() == "footfall-watchdog":
                task.cancel()  # no pings once stopping: systemd gives the stop its own timeout
        self.notifier.send("STOPPING=1")
        for source in self.sources.values():
            await source.stop()
        self.sources.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(OSError, BufferError):
            await self.write_status(running=False)
        await self.buffer.close()
        self.notifier.close()
        event(log, "agent_stopped")

    def _load_identity(self) -> Ed25519PrivateKey | None:
        if not identity_path(self.state_dir).exists():
            event(
                log,
                "not_enrolled",
                logging.WARNING,
                state_dir=str(self.state_dir),
                hint="run footfall agent enroll, then restart; readings are buffered meanwhile",
            )
            return None
        self.identity = load_identity(self.state_dir)
        return load_key(self.state_dir)

    def _intake(self, source: SourceConfig) -> SourceIntake:
        profile = self.profiles[source.adapter]
        zone_name = source.timezone or self.config.agent.timezone or (self.identity.timezone if self.identity else "")
        return SourceIntake(
            source,
            profile,
            self.extractors[profile.format],
            self.buffer,
            zone=ZoneInfo(zone_name) if zone_name else None,
            clock=self.clock,
            stamps=self.agent_clock.stamp,
        )

    async def status(self, *, running: bool = True) -> dict[str, Any]:
        """Everything `footfall agent status` shows, JSON-ready."""
        stats = await self.buffer.stats()
        push = self.sources.get("http_push")
        return {
            "version": __version__,
            "pid": os.getpid(),
            "running": running,
            "started_at_ms": self._started_ms,
            "updated_at_ms": int(self.clock() * 1000),
            "status_every_s": STATUS_EVERY_S,
            "agent_id": self.identity.agent_id if self.identity else "",
            "enrolled": self.identity is not None,
            "collector_url": (self.config.collector.url or (self.identity.collector_url if self.identity else "")),
            "buffer": {**stats.as_dict(), "commits": self.buffer.commits},
            "upload": self.uploader.status.as_dict() if self.uploader else None,
            "clock": self.agent_clock.status(),
            "sources": [intake.health.as_dict() for intake in self.intakes],
            "transports": {name: sup.state.as_dict() for name, sup in self.supervisors.items()},
            "watchdog": self.watchdog.state.as_dict() if self.watchdog else None,
            "http_push": {
                "listen": self.config.http_push.listen,
                "port": push.port if isinstance(push, HttpPushServer) else 0,
            },
        }

    async def write_status(self, *, running: bool = True) -> None:
        """Rewrite status.json atomically (tmp file + rename; no fsync: it is rebuilt every few seconds)."""
        status = await self.status(running=running)
        data = json.dumps(status, indent=2) + "\n"
        tmp = self.status_path.with_name(f".{STATUS_FILE}.tmp")
        await asyncio.to_thread(_replace_file, tmp, self.status_path, data)
        if running:
            self.notifier.send(f"STATUS={self.summary(status)}")

    def summary(self, status: dict[str, Any] | None = None) -> str:
        """One line for systemd's STATUS=: buffer depth, uploads, clock, sources."""
        depth = self.buffer.pending.depth
        upload = self.uploader.status.state if self.uploader else "not enrolled"
        trust = self.agent_clock.trust
        clock = "clock ok" if trust.trusted else f"clock untrusted ({trust.reason})"
        down = [intake.source.name for intake in self.intakes if intake.health.state == "down"]
        sources = f"{len(self.intakes) - len(down)}/{len(self.intakes)} sources up"
        if down:
            sources += " (down: " + ", ".join(down) + ")"
        held = f", {status['buffer']['held']} held" if status and status["buffer"]["held"] else ""
        return f"{depth} buffered{held}; uploads {upload}; {clock}; {sources}"

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.write_status()
            except OSError as exc:
                event(log, "status_write_failed", logging.WARNING, path=str(self.status_path), error=str(exc))
            await asyncio.sleep(STATUS_EVERY_S)


def _clock_settings(config: AgentConfig) -> ClockSettings:
    section = config.clock
    floor = date_ms(section.not_before) if section.not_before else ClockSettings().not_before_ms
    return ClockSettings(require_sync=section.require_sync, not_before_ms=floor, max_skew_s=section.max_skew)


def _task_probe(task: asyncio.Task[Any]) -> Probe:
    def probe() -> str | None:
        return None if _ends_when_done(task) else task_alive(task)

    return probe


def _ends_when_done(task: asyncio.Task[Any]) -> bool:
    """A supervisor's task ends, by design, once its transport runs."""
    return task.get_name().startswith("footfall-supervise-") and task.done() and task.exception() is None


def _replace_file(tmp: Path, path: Path, data: str) -> None:
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


async def run_until_signalled(config: AgentConfig) -> None:
    """Run a pipeline until SIGTERM or SIGINT, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Pipeline(config).run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
