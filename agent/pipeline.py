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

Beside the data path run the heartbeat (agent/heartbeat.py) and, when `[metrics] listen` is
set, the Prometheus endpoint (agent/metrics.py). A configuration pushed by the fleet is
applied by `reconfigure`: the sources and the uploader stop and start again with the new
settings while the buffer stays open, so nothing buffered is lost or repeated; if the new
sources cannot start, the previous configuration is started again and the new one refused.

Life on a gateway (issue 7): the agent clock (agent/clock.py) is judged before the buffer
opens and again with what the buffer remembers, and a keeper task re-judges it every second
and re-stamps held readings once it is trusted; at start, a transport that cannot start is
retried by a supervisor (agent/supervise.py) while everything else runs; under systemd the
agent says READY=1 once it serves, keeps STATUS= current, pings the watchdog only while it
makes progress (agent/systemd.py), and says STOPPING=1 on the way out. A buffer that SQLite
finds damaged while running stops the agent (exit 1); its restart moves the file aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent import clock as agent_clock
from footfall.agent.buffer import CLOCK_KEY, Buffer, BufferCorrupt, BufferError, BufferStats
from footfall.agent.buffer.marks import read_marks
from footfall.agent.clock import AgentClock, ClockSettings, ClockSource
from footfall.agent.config.reader import ConfigError, date_ms
from footfall.agent.config.sections import AgentConfig, SourceConfig
from footfall.agent.config.transports import transports
from footfall.agent.decode.formats import Extractor, default_extractors
from footfall.agent.decode.profile import Profile
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.fleet_config import ConfigRefused, FleetConfigState
from footfall.agent.heartbeat import Heartbeat
from footfall.agent.identity import Identity, identity_path, load_identity, load_key
from footfall.agent.intake import SourceIntake
from footfall.agent.metrics import AgentMetrics, MetricsServer
from footfall.agent.sources.base import Source, SourceError, SourceHealth, TransportFactory
from footfall.agent.sources.http_push import HttpPushServer
from footfall.agent.supervise import SourceSupervisor
from footfall.agent.systemd import Notifier, Probe, Watchdog, task_alive, watchdog_interval
from footfall.agent.uploader import Uploader
from footfall.protocol.records import Record, Transaction

from footfall import __version__
from footfall.logs import configure, event

log = logging.getLogger("footfall.agent")

BUFFER_FILE = "buffer.sqlite"
STATUS_FILE = "status.json"
STATUS_EVERY_S = 2.0


class Pipeline:
    """One agent: build with a config, `await start()`, later `await stop()` (or `await run(stop_event)`)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        local_config: AgentConfig | None = None,
        fleet_state: FleetConfigState | None = None,
        clock_source: ClockSource | None = None,
        notifier: Notifier | None = None,
        runtime_dir: Path | None = None,
    ) -> None:
        """`config` is what runs; `local_config` the agent.toml it came from (a pushed one is checked against it).

        `clock_source` replaces the real clocks (tests); `notifier` the sd_notify socket from the environment;
        `runtime_dir` the tmpfs folder for status.json (default: systemd's `$RUNTIME_DIRECTORY`, if set).
        """
        self.config = config
        self.local_config = local_config or config
        self.fleet_state = fleet_state or FleetConfigState()
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
        self.transports: dict[str, TransportFactory] = dict(transports())
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
        # Supervisors of transports that could not start at first, retrying (agent/supervise.py).
        self._supervise_tasks: list[asyncio.Task[None]] = []
        self.uploader: Uploader | None = None
        self.key: Ed25519PrivateKey | None = None
        self.heartbeat: Heartbeat | None = None
        self.metrics = AgentMetrics(self)
        self.metrics_server: MetricsServer | None = None
        self.last_stats: BufferStats | None = None
        self._health: dict[str, SourceHealth] = {}
        self._request_offset_s = 0.0
        self._uploader_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set when reconfigure replaced a task, so `run` waits on the new one.
        self._tasks_changed = asyncio.Event()
        self.started_ms = 0

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

    @property
    def collector_url(self) -> str:
        """Where requests go: `[collector] url`, else the URL enrollment recorded."""
        return (self.config.collector.url or (self.identity.collector_url if self.identity else "")).rstrip("/")

    @property
    def request_offset_s(self) -> float:
        """Seconds added to our clock for request timestamps (measured from a collector's refusal); shared."""
        return self.uploader.status.clock_offset_s if self.uploader else self._request_offset_s

    @request_offset_s.setter
    def request_offset_s(self, value: float) -> None:
        self._request_offset_s = value
        if self.uploader is not None:
            self.uploader.status.clock_offset_s = value

    async def start(self) -> None:
        """Open everything; raises ConfigError, IdentityError, BufferError or SourceError with the reason."""
        self.started_ms = int(self.clock() * 1000)
        self.profiles = load_profiles(self.config.agent.adapter_dirs, extractors=self.extractors)
        self.key = self._load_identity()
        self._link_status()
        marks = read_marks(self.buffer.marks_path)
        self.agent_clock.start(wall_high_ms=marks.wall_high_ms if marks else 0)
        await self.buffer.open()
        try:
            stats = await self.buffer.stats()
            self.agent_clock.start(wall_high_ms=stats.wall_high_ms, saved=await self.buffer.get_state(CLOCK_KEY))
            await self._start_data_path(supervise=True)
            self._tasks.append(
                asyncio.create_task(
                    agent_clock.keep(self.agent_clock, self.buffer, lambda: self.collector_url),
                    name="footfall-clock",
                )
            )
            self._tasks.append(asyncio.create_task(self._status_loop(), name="footfall-status"))
            if self.identity is not None:
                self.heartbeat = Heartbeat(self)
                self._tasks.append(asyncio.create_task(self.heartbeat.run(), name="footfall-heartbeat"))
            await self._start_metrics()
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
            config=f"fleet v{self.fleet_state.applied_version}" if self.fleet_state.applied_version else "local",
            clock=self.agent_clock.trust.reason,
        )
        self.notifier.send("READY=1", f"STATUS={self.summary()}")

    def _start_watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        probes: dict[str, Probe] = {
            "buffer": self._buffer_answers,
            "uploader": lambda: task_alive(self._uploader_task) if self._uploader_task is not None else None,
            "upload": lambda: self.uploader.stuck() if self.uploader is not None else None,
            "sources": self._supervisors_alive,
        }
        for task in list(self._tasks):
            probes[task.get_name()] = _task_probe(task)
        self.watchdog = Watchdog(self.notifier, interval, probes)
        self._tasks.append(asyncio.create_task(self.watchdog.run(), name="footfall-watchdog"))

    async def _buffer_answers(self) -> str | None:
        await self.buffer.ping()
        return None

    def _supervisors_alive(self) -> str | None:
        for task in self._supervise_tasks:
            if task.done() and not _ended_quietly(task):
                return f"{task.get_name()}: {task_alive(task)}"
        return None

    async def _start_data_path(self, *, supervise: bool = False) -> None:
        """Build and start the sources and the uploader of the current configuration.

        With `supervise` (at start), a transport that fails to start with a retryable SourceError is
        retried in the background with backoff while the rest runs; otherwise (a pushed configuration)
        the SourceError propagates, so that the configuration is refused.
        """
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
                if not supervise:
                    raise SourceError(supervisor.state.last_error)
                self._supervise_tasks.append(
                    asyncio.create_task(supervisor.run(), name=f"footfall-supervise-{transport}")
                )
                self._tasks_changed.set()
        if self.identity is not None and self.key is not None:
            previous = self.uploader.status if self.uploader is not None else None
            self.uploader = Uploader(
                self.buffer,
                self.config.upload,
                state_dir=self.state_dir,
                identity=self.identity,
                key=self.key,
                collector_url=self.config.collector.url,
                timeout=self.config.collector.timeout,
                clock=self.clock,
                on_server_time=self.agent_clock.observe_collector,
            )
            if previous is not None:
                # Counters go on across a reconfiguration; only the state starts afresh.
                previous.state = "idle" if previous.state != "re-enroll" else previous.state
                self.uploader.status = previous
            self.uploader.status.clock_offset_s = self._request_offset_s
            self.uploader.on_response = self.metrics.observe_upload
            self.uploader.on_rejected = self._record_rejected
            self._uploader_task = asyncio.create_task(self.uploader.run(), name="footfall-uploader")
            self._tasks_changed.set()

    async def _stop_data_path(self) -> None:
        """Stop the sources (requests in progress finish and commit), then the uploader (its batch stays buffered)."""
        for task in self._supervise_tasks:
            task.cancel()
        for task in self._supervise_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervise_tasks.clear()
        self.supervisors.clear()
        for source in self.sources.values():
            await source.stop()
        self.sources.clear()
        if self._uploader_task is not None:
            self._uploader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._uploader_task
            self._uploader_task = None
        if self.uploader is not None:
            self._request_offset_s = self.uploader.status.clock_offset_s

    async def _start_metrics(self) -> None:
        if not self.config.metrics.listen:
            return
        server = MetricsServer(self.metrics, self.config.metrics.listen)
        try:
            await server.start()
        except OSError as exc:
            raise SourceError(
                f"metrics cannot listen on {self.config.metrics.listen}: {exc.strerror or exc}; "
                "change [metrics] listen or leave it empty"
            ) from exc
        self.metrics_server = server

    async def _stop_metrics(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None

    async def reconfigure(self, config: AgentConfig) -> None:
        """Run `config` from now on without touching the buffer; ConfigRefused (and the old one running) otherwise."""
        if config.agent.state_dir.resolve() != self.state_dir.resolve():
            raise ConfigRefused("agent.state_dir cannot change while the agent runs: the buffer lives there")
        try:
            profiles = load_profiles(config.agent.adapter_dirs, extractors=self.extractors)
        except ConfigError as exc:
            raise ConfigRefused(str(exc)) from None
        old_config, old_profiles = self.config, self.profiles
        states = {name: health.state for name, health in self._health.items()}
        await self._stop_data_path()
        await self._stop_metrics()
        self.config, self.profiles = config, profiles
        try:
            await self._start_data_path()
            await self._start_metrics()
        except (SourceError, OSError) as exc:
            event(log, "reconfigure_failed", logging.ERROR, error=str(exc), action="restarting the previous config")
            await self._stop_data_path()
            await self._stop_metrics()
            self.config, self.profiles = old_config, old_profiles
            await self._start_data_path(supervise=True)
            await self._start_metrics()
            for name, state in states.items():
                # The failed attempt marked these down; running the old configuration again, they are as before.
                self._health[name].state = state
            raise ConfigRefused(f"the new configuration could not start: {exc}") from exc
        self.buffer.max_size = config.buffer.max_size
        self.buffer.commit_interval = config.buffer.commit_interval
        if (config.agent.log_level, config.agent.log_format) != (old_config.agent.log_level,
                                                                 old_config.agent.log_format):
            configure(config.agent.log_level, config.agent.log_format)
        event(log, "reconfigured", sources=len(self.intakes), uploads="on" if self.uploader else "off")

    def use_identity(self, identity: Identity, key: Ed25519PrivateKey) -> None:
        """Sign with `key` as `identity` from now on (after a key rotation or a re-enrollment)."""
        self.identity, self.key = identity, key
        if self.uploader is not None:
            self.uploader.identity, self.uploader.key = identity, key

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until `stop` is set or a task fails, then stop cleanly."""
        await self.start()
        stopper = asyncio.create_task(stop.wait(), name="footfall-stop-wait")
        fatal = asyncio.create_task(self.buffer.fatal.wait(), name="footfall-buffer-fatal")
        changed: asyncio.Task[bool] | None = None
        try:
            while not stopper.done():
                self._tasks_changed.clear()
                changed = asyncio.create_task(self._tasks_changed.wait(), name="footfall-tasks-changed")
                # A task that ended quietly (a supervisor whose transport started) is not waited on again.
                running = [t for t in (*self._tasks, *self._supervise_tasks) if not _ended_quietly(t)]
                watched = [stopper, changed, fatal, *running]
                if self._uploader_task is not None:
                    watched.append(self._uploader_task)
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if fatal in done:
                    raise BufferCorrupt(
                        f"the buffer {self.buffer.path} is damaged ({self.buffer.fatal_reason}); restart the agent: "
                        "it moves the file aside and starts a fresh buffer"
                    )
                for task in done:
                    if task in (stopper, changed) or task.cancelled():
                        continue
                    error = task.exception()
                    if error is not None:
                        raise error
        finally:
            for waiter in (stopper, changed, fatal):
                if waiter is not None:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
            await self.stop()

    async def stop(self) -> None:
        """Stop the heartbeat, sources, then uploads, then flush and close the buffer; safe to call twice."""
        for task in self._tasks:
            if task.get_name() == "footfall-watchdog":
                task.cancel()  # no pings once stopping: systemd gives the stop its own timeout
        self.notifier.send("STOPPING=1")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._stop_data_path()
        await self._stop_metrics()
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
        intake = SourceIntake(
            source,
            profile,
            self.extractors[profile.format],
            self.buffer,
            zone=ZoneInfo(zone_name) if zone_name else None,
            clock=self.clock,
            stamps=self.agent_clock.stamp,
        )
        # A source that survives a reconfiguration keeps its counters (status, heartbeat and metrics count on).
        kept = self._health.get(source.name)
        if kept is not None:
            kept.transport, kept.adapter = source.transport, source.adapter
            intake.health = kept
        self._health[source.name] = intake.health
        return intake

    def _record_rejected(self, record: Record, reason: str) -> None:
        """Count a record the collector refused against the source that made it (by sensor or terminal name)."""
        name = record.terminal if isinstance(record, Transaction) else record.sensor
        health = self._health.get(name)
        if health is not None:
            health.refused(int(self.clock() * 1000), reason)

    async def status(self, *, running: bool = True) -> dict[str, Any]:
        """Everything `footfall agent status` shows, JSON-ready."""
        stats = await self.buffer.stats()
        self.last_stats = stats
        push = self.sources.get("http_push")
        return {
            "version": __version__,
            "pid": os.getpid(),
            "running": running,
            "started_at_ms": self.started_ms,
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
            "heartbeat": {
                "interval_s": self.config.heartbeat.interval,
                **(self.heartbeat.status.as_dict() if self.heartbeat else {"state": "off"}),
            },
            "config": {"path": str(self.local_config.path or ""), **self.fleet_state.as_dict()},
            "metrics": {
                "listen": self.config.metrics.listen,
                "port": self.metrics_server.port if self.metrics_server else 0,
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
        return task_alive(task)

    return probe


def _ended_quietly(task: asyncio.Task[Any]) -> bool:
    """Done without an error: cancelled, or returned (a supervisor does, once its transport runs)."""
    return task.done() and (task.cancelled() or task.exception() is None)


def _replace_file(tmp: Path, path: Path, data: str) -> None:
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


async def run_until_signalled(
    config: AgentConfig, *, local_config: AgentConfig | None = None, fleet_state: FleetConfigState | None = None
) -> None:
    """Run a pipeline until SIGTERM or SIGINT, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Pipeline(config, local_config=local_config, fleet_state=fleet_state).run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
