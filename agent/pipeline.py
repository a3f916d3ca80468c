"""The running agent: config -> profiles -> buffer -> sources -> uploader, as tasks under one loop.

`Pipeline` owns its registries as plain dicts (format extractors, transports, profiles), so
nothing is global and a test can build two pipelines side by side. `start` fails early and
clearly (a bad profile, an unusable port, an unsafe key); `stop` first stops the sources (no
new frames; requests in progress finish and get their commit), then the uploader (what it
had in flight stays buffered), then commits what is queued and closes the buffer.

While it runs, `status.json` in the state directory is rewritten atomically every few seconds
(and at start and stop); `footfall agent status` reads it together with the buffer file
opened read-only, so status works whether or not the agent runs.
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
from footfall.agent.buffer import Buffer
from footfall.agent.config import AgentConfig, SourceConfig
from footfall.agent.decode.extract import Extractor, default_extractors
from footfall.agent.decode.profile import Profile, load_profiles
from footfall.agent.identity import Identity, identity_path, load_identity, load_key
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Source
from footfall.agent.sources.csv_dir import CsvDirSource
from footfall.agent.sources.http_poll import HttpPollSource
from footfall.agent.sources.http_push import HttpPushServer
from footfall.agent.sources.modbus import ModbusSource
from footfall.agent.sources.mqtt import MqttSource
from footfall.agent.sources.serial import SerialSource
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
    return {
        "http_push": HttpPushServer,
        "serial": SerialSource,
        "modbus": ModbusSource,
        "mqtt": MqttSource,
        "http_poll": HttpPollSource,
        "csv_dir": CsvDirSource,
    }


class Pipeline:
    """One agent: build with a config, `await start()`, later `await stop()` (or `await run(stop_event)`)."""

    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.state_dir = config.agent.state_dir
        self.extractors: dict[str, Extractor] = default_extractors()
        self.transports: dict[str, TransportFactory] = default_transports()
        self.profiles: dict[str, Profile] = {}
        self.identity: Identity | None = None
        self.buffer = Buffer(
            self.state_dir / BUFFER_FILE,
            max_size=config.buffer.max_size,
            commit_interval=config.buffer.commit_interval,
            clock=clock,
        )
        self.intakes: list[SourceIntake] = []
        self.sources: dict[str, Source] = {}
        self.uploader: Uploader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_ms = 0

    @property
    def status_path(self) -> Path:
        """Where the status file is written."""
        return self.state_dir / STATUS_FILE

    async def start(self) -> None:
        """Open everything; raises ConfigError, IdentityError, BufferError or SourceError with the reason."""
        self._started_ms = int(self.clock() * 1000)
        self.profiles = load_profiles(self.config.agent.adapter_dirs, extractors=self.extractors)
        uploader_key = self._load_identity()
        await self.buffer.open()
        try:
            self.intakes = [self._intake(source) for source in self.config.enabled_sources]
            by_transport: dict[str, list[SourceIntake]] = {}
            for intake in self.intakes:
                by_transport.setdefault(intake.source.transport, []).append(intake)
            for transport, intakes in by_transport.items():
                source = self.transports[transport].from_config(self.config, intakes)
                await source.start()
                self.sources[transport] = source
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
                )
                self._tasks.append(asyncio.create_task(self.uploader.run(), name="footfall-uploader"))
            self._tasks.append(asyncio.create_task(self._status_loop(), name="footfall-status"))
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
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Start, run until `stop` is set or a task fails, then stop cleanly."""
        await self.start()
        stopper = asyncio.create_task(stop.wait(), name="footfall-stop-wait")
        try:
            done, _ = await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            await self.stop()

    async def stop(self) -> None:
        """Stop sources, then uploads, then flush and close the buffer; safe to call twice."""
        for source in self.sources.values():
            await source.stop()
        self.sources.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(OSError):
            await self.write_status(running=False)
        await self.buffer.close()
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
            "buffer": stats.as_dict(),
            "upload": self.uploader.status.as_dict() if self.uploader else None,
            "sources": [intake.health.as_dict() for intake in self.intakes],
            "http_push": {
                "listen": self.config.http_push.listen,
                "port": push.port if isinstance(push, HttpPushServer) else 0,
            },
        }

    async def write_status(self, *, running: bool = True) -> None:
        """Rewrite status.json atomically (tmp file + rename; no fsync: it is rebuilt every few seconds)."""
        data = json.dumps(await self.status(running=running), indent=2) + "\n"
        tmp = self.status_path.with_name(f".{STATUS_FILE}.tmp")
        await asyncio.to_thread(_replace_file, tmp, self.status_path, data)

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.write_status()
            except OSError as exc:
                event(log, "status_write_failed", logging.WARNING, path=str(self.status_path), error=str(exc))
            await asyncio.sleep(STATUS_EVERY_S)


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
