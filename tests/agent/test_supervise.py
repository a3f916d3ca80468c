"""A source that keeps failing backs off to a ceiling and never starves the others or the uploader.

The failing source is a transport defined here for the test, a device on a TCP port that
sends JSON lines: its `start()` really connects to 127.0.0.1, and the port really refuses
until the test opens it. Beside it, the shipped http_push transport takes readings, and the
uploader sends them to the scripted collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import socket
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from footfall.agent.config.load import load_config
from footfall.agent.config.sections import AgentConfig, SourceConfig
from footfall.agent.identity import enroll
from footfall.agent.intake import SourceIntake
from footfall.agent.pipeline import Pipeline
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, SourceError
from footfall.agent.sources.device import keep_running, stop_tasks
from footfall.agent.status import render
from footfall.agent.supervise import SourceSupervisor
from footfall.protocol.records import Count

from tests.agent.conftest import eventually
from tests.agent.peer import PeerCollector
from tests.agent.test_pipeline import period, write_config


class TcpLineSource:
    """A device on a TCP port sending one JSON reading per line (this test's transport)."""

    def __init__(self, port: int, intake: SourceIntake) -> None:
        self.port = port
        self.intake = intake
        self.attempts = 0
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.attempts += 1
        try:
            reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            raise SourceError(f"cannot connect to the counter at 127.0.0.1:{self.port}: {exc.strerror}") from None
        self._task = asyncio.create_task(self._read(reader), name="tcp-line-reader")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            await self.intake(Frame(self.intake.source.name, line, 0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_backoff_doubles_to_its_ceiling_and_stays_there() -> None:
    backoff = Backoff(1.0, 30.0, rng=random.Random(7))
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    delays = [backoff.next() for _ in ceilings]
    assert all(c / 2 <= d <= c for c, d in zip(ceilings, delays, strict=True)), delays
    assert max(Backoff(0.5, 10.0).next() for _ in range(100)) <= 10.0
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1


async def test_keep_running_resets_the_delay_only_after_a_session_that_lasted_stable_after() -> None:
    """The time half of "healthy" (the frame half is proved on a pty in test_serial.py)."""

    async def attempts(stable_after: float) -> list[int]:
        backoff = Backoff(0.01, 0.04, stable_after=stable_after)
        seen: list[int] = []

        async def session() -> None:
            seen.append(backoff.attempt)
            raise SourceError("connected, then dropped at once")

        task = asyncio.create_task(keep_running("flaky", session, [], backoff))
        try:
            await eventually(lambda: len(seen) >= 6, what="six sessions")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return seen[:6]

    assert await attempts(60.0) == [0, 1, 2, 3, 4, 5], "short sessions keep the delay growing"
    assert await attempts(0.0) == [0, 1, 1, 1, 1, 1], "sessions that lasted stable_after start it again"


async def test_a_failing_source_backs_off_while_the_others_and_the_uploads_carry_on(
    tmp_path: Path, peer: PeerCollector
) -> None:
    base = load_config(write_config(tmp_path))
    port = free_port()
    config: AgentConfig = dataclasses.replace(
        base,
        agent=dataclasses.replace(base.agent, source_backoff_initial=0.01, source_backoff_max=0.05),
        sources=(*base.sources, SourceConfig("door-2", "tcp_line", "generic-json-counter")),
    )
    await enroll(config.agent.state_dir, peer.url, "ffe_test")
    pipeline = Pipeline(config)
    made: list[TcpLineSource] = []

    class TcpLineTransport:
        @staticmethod
        def from_config(_: AgentConfig, intakes: Sequence[SourceIntake]) -> TcpLineSource:
            made.append(TcpLineSource(port, intakes[0]))
            return made[-1]

    pipeline.transports["tcp_line"] = TcpLineTransport
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    try:
        await eventually(lambda: getattr(pipeline.sources.get("http_push"), "port", 0) > 0, what="http_push")
        supervisor = pipeline.supervisors["tcp_line"]
        await eventually(lambda: supervisor.state.attempts >= 12, what="the failing source to keep trying")
        assert all(0.05 / 2 <= d <= 0.05 for d in supervisor.state.delays[5:]), supervisor.state.delays
        door = next(i for i in pipeline.intakes if i.source.name == "door-2")
        assert door.health.state == "down" and "cannot connect to the counter" in door.health.last_error

        # Meanwhile the healthy source takes readings and they go up.
        push = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
        async with aiohttp.ClientSession() as session:
            for minute in range(10):
                async with session.post(f"http://127.0.0.1:{push}/push/entrance", json=period(minute)) as answer:
                    assert answer.status == 200
        await eventually(lambda: len(peer.accepted) >= 10, what="the healthy source's readings to be uploaded")
        status = await pipeline.status()
        assert status["transports"]["tcp_line"]["state"] == "retrying"
        assert "tcp_line: cannot start, retrying" in render({**status, "problems": []})

        # The device comes back: the next attempt connects, and its readings flow too.
        async def device(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            reading = {"line": "side", "start": "2026-03-08T11:00:00Z", "end": "2026-03-08T11:01:00Z", "in": 7,
                       "out": 0}
            writer.write(json.dumps(reading).encode() + b"\n")
            await writer.drain()

        server = await asyncio.start_server(device, "127.0.0.1", port)
        async with server:
            await eventually(lambda: supervisor.running, what="the source to start once its device answers")
            await eventually(
                lambda: any(isinstance(r, Count) and r.sensor == "door-2" for r in peer.accepted),
                what="the recovered source's reading to be uploaded",
            )
            assert door.health.state == "ok" and supervisor.backoff.attempt == 0
            stop.set()
            await run
    finally:
        stop.set()
        if not run.done():
            await run


async def test_a_busy_push_port_does_not_stop_the_agent_and_is_taken_once_free(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    base = load_config(write_config(tmp_path))
    config = dataclasses.replace(
        base,
        agent=dataclasses.replace(base.agent, source_backoff_initial=0.01, source_backoff_max=0.05),
        http_push=dataclasses.replace(base.http_push, listen=f"127.0.0.1:{port}"),
    )
    pipeline = Pipeline(config)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    try:
        supervisor = await _supervisor(pipeline, "http_push")
        await eventually(lambda: supervisor.state.attempts >= 3, what="retries while the port is taken")
        assert "cannot listen on 127.0.0.1:" in supervisor.state.last_error
        assert all(i.health.state == "down" for i in pipeline.intakes)
        holder.close()  # whatever held the port goes away
        await eventually(lambda: supervisor.running, what="the port to be taken")
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/push/entrance", json=period(1)
        ) as answer:
            assert answer.status == 200
    finally:
        holder.close()
        stop.set()
        await run


async def _supervisor(pipeline: Pipeline, transport: str) -> SourceSupervisor:
    await eventually(lambda: transport in pipeline.supervisors, what=f"the {transport} supervisor")
    return pipeline.supervisors[transport]


async def test_stopping_cancels_again_a_task_that_swallowed_its_first_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # as Python 3.11's wait_for does when a cancel meets a completing future
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await stop_tasks([task], every=0.05)
    assert task.cancelled() and swallowed == 2
