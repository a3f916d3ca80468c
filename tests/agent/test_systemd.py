"""sd_notify and the watchdog (agent/systemd.py) against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.systemd import Notifier, Watchdog, task_alive, watchdog_interval

from tests.agent.conftest import eventually
from tests.agent.test_pipeline import REPO, agent_cli, write_config


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, as systemd's NOTIFY_SOCKET is; yields it and its path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket."""
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_notify_reaches_a_path_and_an_abstract_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.send("READY=1", "STATUS=serving")
    assert drain(sock) == ["READY=1\nSTATUS=serving"]
    notifier.close()
    name = f"footfall-test-{uuid.uuid4()}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind("\0" + name)
    abstract.setblocking(False)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("WATCHDOG=1")
        assert drain(abstract) == ["WATCHDOG=1"]
    finally:
        abstract.close()
    silent = Notifier({})
    assert not silent.enabled and not silent.send("READY=1")
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({}) is None


async def test_a_hung_buffer_thread_stops_the_pings_until_it_recovers(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    async with Buffer(tmp_path / "b.sqlite", max_size=1 << 20, commit_interval=0) as buffer:

        async def answers() -> None:
            await buffer.ping()

        watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), 0.3, {"buffer": answers})
        task = asyncio.create_task(watchdog.run())
        try:
            await eventually(lambda: watchdog.state.pings >= 2, what="pings while the buffer answers")
            drain(sock)
            stuck = threading.Event()
            # A write that never returns: what a wedged fsync on a dying SD card looks like to the agent.
            hung = asyncio.create_task(buffer.write(lambda txn: stuck.wait(60)))
            withheld = watchdog.state.withheld
            await eventually(lambda: watchdog.state.withheld >= withheld + 2, what="two rounds withheld")
            sent = drain(sock)
            first_complaint = next(i for i, m in enumerate(sent) if m.startswith("STATUS=not progressing"))
            assert "buffer: no answer" in sent[first_complaint]
            assert "WATCHDOG=1" not in sent[first_complaint:], "no ping once the buffer stopped answering"
            stuck.set()
            await hung
            pings = watchdog.state.pings
            await eventually(lambda: watchdog.state.pings > pings, what="pings again once it answers")
            assert "WATCHDOG=1" in drain(sock)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_blocked_event_loop_cannot_ping_and_a_dead_task_stops_the_pings(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    worker = asyncio.create_task(asyncio.Event().wait(), name="worker")
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": path}), 0.3, {"worker": lambda: task_alive(worker)})
    task = asyncio.create_task(watchdog.run())
    try:
        await eventually(lambda: watchdog.state.pings >= 1, what="a first ping")
        drain(sock)

        def block_the_loop() -> None:
            # A blocking call on the loop's thread (a stuck library call): three watchdog periods pass.
            ready, _, _ = select.select([sock], [], [], 0.3)
            assert not ready, "something pinged while the loop was blocked"

        asyncio.get_running_loop().call_soon(block_the_loop)
        await eventually(lambda: watchdog.state.worst_loop_lag_s >= 0.15, what="the stall to be seen")
        worker.cancel()
        await eventually(lambda: watchdog.state.problems == ["worker: cancelled"], what="the dead task")
        assert drain(sock)[-1] == "STATUS=not progressing: worker: cancelled"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_real_agent_says_ready_pings_while_it_runs_and_says_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    config = write_config(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000", "RUNTIME_DIRECTORY": str(runtime)}
    with (tmp_path / "agent.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "footfall.agent", "run", "--config", str(config),
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    received: list[str] = []

    async def listen() -> None:
        # Read as systemd does, all the time: a datagram socket's queue is short and a full one drops messages.
        while True:
            received.append((await asyncio.get_running_loop().sock_recv(sock, 4096)).decode())

    listener = asyncio.create_task(listen())
    try:

        def got(what: str) -> bool:
            return any(m.startswith(what) for m in received)

        await eventually(lambda: got("READY=1"), within=30, what="READY=1")
        ready = next(m for m in received if m.startswith("READY=1"))
        assert "STATUS=0 buffered; uploads not enrolled;" in ready and "2/2 sources up" in ready
        await eventually(lambda: got("WATCHDOG=1"), what="a watchdog ping")
        count = received.count("WATCHDOG=1")
        await eventually(lambda: received.count("WATCHDOG=1") >= count + 2, what="pings to keep coming")
        link = tmp_path / "state" / "status.json"
        assert link.is_symlink() and link.resolve() == runtime / "status.json", "status.json lives on tmpfs"
        shown = await asyncio.to_thread(agent_cli, "status", "--config", str(config))
        assert shown.returncode == 0 and "running (pid" in shown.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
        await eventually(lambda: "STOPPING=1" in received, what="STOPPING=1")
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
    assert received[-1] == "STOPPING=1", received[-5:]


def test_the_unit_file_asks_for_notify_and_a_watchdog() -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "packaging" / "systemd" / "footfall-agent.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "30s" and service["Restart"] == "on-failure"  # a watchdog kill is a failure
    assert service["RuntimeDirectory"] == "footfall"
    assert service["ExecStart"].split()[1:3] == ["agent", "run"]
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
