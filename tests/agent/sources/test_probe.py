"""`footfall agent probe` through its command line, against the same real peers as the transports."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from footfall.agent.sources.serial import port_problem
from typer.testing import CliRunner

from footfall.cli import app as footfall_app
from tests.agent.sources.conftest import Pty, new_pty
from tests.agent.sources.modbus_peer import ModbusPeer
from tests.agent.sources.test_serial import pc
from tests.fixtures.mqtt import Broker, publish

Trigger = tuple[str, Callable[[], Awaitable[None] | None]]


async def probe(*args: str, when: Trigger | None = None, within: float = 30.0) -> tuple[int, str, str]:
    """Run `footfall agent probe ARGS` as a real process; when a stdout line contains when[0], run when[1]."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "footfall",
        "agent",
        "probe",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(within):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line)
                if when is not None and when[0] in line:
                    result = when[1]()
                    if result is not None:
                        await result
                    when = None
            err = (await proc.stderr.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, "".join(lines), err


async def probe_here(*args: str) -> tuple[int, str, str]:
    """`footfall agent probe ARGS` in this process (the command line's own code, no spawn), off the loop."""

    def invoke() -> tuple[int, str, str]:
        result = CliRunner().invoke(footfall_app, ["agent", "probe", *args])
        return result.exit_code, result.stdout, result.stderr

    return await asyncio.to_thread(invoke)


async def test_serial_frames_and_readings(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = new_pty(ptys, tmp_path / "ttyEVO")
    code, out, _ = await probe(
        "serial",
        "--port",
        str(pty.link),
        "--baud",
        "115200",
        "--adapter",
        "terabee-evo",
        "--duration",
        "20",
        "--max-frames",
        "2",
        when=("listening on", lambda: pty.write(b"junk" + pc(10, 4) + pc(12, 4))),
    )
    assert code == 0, out
    assert "frame 1: 11 bytes" in out and "hex:  50 43" in out
    assert '"entries": 12' in out and "reading (running totals)" in out
    assert "garbage" in out


async def test_serial_wrong_baud_rate_is_named(tmp_path: Path, ptys: list[Pty]) -> None:
    pty = new_pty(ptys, tmp_path / "ttyEVO")
    noise = bytes((i * 37 + 11) % 256 for i in range(600)).replace(b"PC", b"pc").replace(b"DD", b"dd")
    code, out, _ = await probe(
        "serial",
        "--port",
        str(pty.link),
        "--adapter",
        "terabee-evo",
        "--duration",
        "1.5",
        when=("listening on", lambda: pty.write(noise)),
    )
    assert code == 3
    assert "WRONG BAUD RATE" in out


async def test_serial_missing_and_busy_ports(tmp_path: Path, ptys: list[Pty]) -> None:
    code, _, err = await probe_here("serial", "--port", str(tmp_path / "ttyNONE"), "--duration", "1")
    assert code == 1 and "does not exist" in err and ("ports present" in err or "no serial adapters" in err)
    pty = new_pty(ptys, tmp_path / "ttyBUSY")
    holder = os.open(pty.slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another program holding the port does
        code, _, err = await probe_here("serial", "--port", str(pty.link), "--duration", "1")
    finally:
        os.close(holder)
    assert code == 1 and "is busy" in err


def test_permission_problem_points_to_dialout() -> None:
    message = port_problem("/dev/ttyUSB0", PermissionError(errno.EACCES, "Permission denied"))
    assert "dialout" in message and "/dev/ttyUSB0" in message


async def test_modbus_registers_exceptions_and_silence() -> None:
    peer = ModbusPeer([1, 2])
    port = await peer.serve_tcp()
    peer.set_u32(1, 0, 70000)
    peer.set_u32(1, 2, 12)
    peer.exception[2] = 2
    try:
        code, out, _ = await probe_here("modbus", "--host", "127.0.0.1", "--port", str(port), "--count", "4")
        assert code == 0 and "high word first = 70000" in out
        code, out, _ = await probe_here(
            "modbus", "--host", "127.0.0.1", "--port", str(port), "--adapter", "generic-modbus-counter"
        )
        assert code == 0 and '"entries": 70000' in out and '"exits": 12' in out
        code, _, err = await probe_here("modbus", "--host", "127.0.0.1", "--port", str(port), "--unit", "2")
        assert code == 1 and "exception 2: illegal data address" in err
        peer.silent.add(2)
        code, _, err = await probe_here(
            "modbus", "--host", "127.0.0.1", "--port", str(port), "--unit", "2", "--timeout", "0.3"
        )
        assert code == 1 and "did not answer" in err and "unit id" in err
    finally:
        await peer.stop()
    code, _, err = await probe_here("modbus", "--host", "127.0.0.1", "--port", str(port))
    assert code == 1 and "refused the connection" in err


async def test_http_body_validators_and_readings() -> None:
    body = json.dumps({"start": "2026-03-08T10:00:00Z", "end": "2026-03-08T10:01:00Z", "in": 3, "out": 2})

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer t0k":
            return web.Response(status=401)
        return web.Response(text=body, headers={"ETag": '"abc"'}, content_type="application/json")

    app = web.Application()
    app.router.add_get("/counts", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/counts"  # type: ignore[union-attr]
    try:
        code, out, _ = await probe_here("http", url, "--token", "t0k", "--adapter", "generic-json-counter")
        assert code == 0 and "HTTP 200" in out and "validators" in out and '"entries": 3' in out
        code, out, _ = await probe_here("http", url, "--token", "nope")
        assert code == 3 and "refused our credentials" in out
    finally:
        await runner.cleanup()


async def test_mqtt_messages_and_readings(mqtt_broker: Broker) -> None:
    topic = f"test/{uuid.uuid4().hex}/data"
    message = json.dumps(
        {
            "time_info": {"start_time": "2026-03-08T10:00:00Z", "end_time": "2026-03-08T10:05:00Z"},
            "line_periodic_data": [{"line": 1, "line_name": "Main", "total": {"in": 5, "out": 1}}],
        }
    )
    code, out, _ = await probe(
        "mqtt",
        "--host",
        "127.0.0.1",
        "--port",
        str(mqtt_broker.port),
        "--topic",
        topic.rsplit("/", 1)[0] + "/#",
        "--adapter",
        "milesight-vs1xx",
        "--max-messages",
        "1",
        "--duration",
        "20",
        when=("subscribed to", lambda: asyncio.to_thread(publish, mqtt_broker.port, topic, message)),
    )
    assert code == 0, out
    assert f"message 1 on {topic}" in out and '"entries": 5' in out
    code, out, _ = await probe(
        "mqtt",
        "--host",
        "127.0.0.1",
        "--port",
        str(mqtt_broker.port),
        "--topic",
        "nobody/publishes/here",
        "--duration",
        "0.5",
    )
    assert code == 3 and "NOTHING ARRIVED" in out
