"""The whole agent: in-process pipeline against the scripted collector, and real `footfall agent` subprocesses
killed with SIGKILL right after their devices got 200s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from footfall.agent.cli import app
from footfall.agent.config.load import load_config
from footfall.agent.identity import enroll
from footfall.agent.pipeline import Pipeline
from footfall.protocol.records import Count, Transaction
from typer.testing import CliRunner

from tests.agent.conftest import eventually
from tests.agent.peer import PeerCollector

REPO = Path(__file__).resolve().parents[2]


def write_config(folder: Path, *, extra: str = "") -> Path:
    path = folder / "agent.toml"
    path.write_text(
        f"""
[agent]
state_dir = "state"
[buffer]
commit_interval = "100ms"
[upload]
max_age = "50ms"
backoff_initial = "20ms"
backoff_max = "100ms"
[http_push]
listen = "127.0.0.1:0"
{extra}
[[sources]]
name = "entrance"
transport = "http_push"
adapter = "generic-json-counter"
path = "/push/entrance"

[[sources]]
name = "till"
transport = "http_push"
adapter = "generic-json-pos"
path = "/push/pos"
"""
    )
    return path


def period(minute: int, line: str = "main") -> dict[str, Any]:
    return {
        "line": line,
        "start": f"2026-03-08T10:{minute:02d}:00Z",
        "end": f"2026-03-08T10:{minute + 1:02d}:00Z",
        "in": minute % 4,
        "out": 1,
    }


async def post_all(port: int, bodies: list[tuple[str, dict[str, Any]]]) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one(path: str, body: dict[str, Any]) -> int:
            async with session.post(f"http://127.0.0.1:{port}{path}", json=body) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(path, body) for path, body in bodies)))


def test_importing_the_agent_never_imports_the_collector_or_psycopg() -> None:
    code = (
        "import sys, footfall.agent, footfall.agent.cli, footfall.agent.pipeline, footfall.agent.status\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg' or m.startswith('footfall.collector'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_gateway_with_http_devices_only_loads_no_serial_modbus_or_mqtt_library(tmp_path: Path) -> None:
    """pyserial, pymodbus and paho-mqtt are imported by their transport, when a source needs it, never before."""
    config = write_config(tmp_path, extra='[[sources]]\nname = "beam"\ntransport = "serial"\n'
                          'adapter = "pointsix-beam"\nport = "/dev/ttyUSB0"\nenabled = false\n')
    heavy = "sorted(m for m in sys.modules if m.split('.')[0] in ('serial', 'pymodbus', 'paho'))"
    code = (
        "import sys\n"
        "from footfall.agent.config.load import load_config\n"
        "from footfall.agent.pipeline import Pipeline\n"
        f"config = load_config({str(config)!r})\n"
        "pipeline = Pipeline(config)\n"
        "pipeline.transports['http_push'].from_config(config, [])\n"
        f"print({heavy})\n"
        "pipeline.transports['serial'].load()\n"
        f"print({heavy})\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60, cwd=REPO)
    before, after = done.stdout.splitlines()
    assert before == "[]", "loaded before any source needed it: " + before
    assert "'serial'" in after, "the serial transport brings pyserial when a source needs it"


async def test_a_reading_travels_from_device_to_collector(tmp_path: Path, peer: PeerCollector) -> None:
    config = load_config(write_config(tmp_path))
    await enroll(config.agent.state_dir, peer.url, "ffe_test")
    pipeline = Pipeline(config)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    try:
        await eventually(
            lambda: getattr(pipeline.sources.get("http_push"), "port", 0) > 0 and pipeline.status_path.exists(),
            what="the agent to start",
        )
        port = pipeline.sources["http_push"].port  # type: ignore[attr-defined]
        sale = {"terminal": "pos-1", "id": "T-1", "at": "2026-03-08T10:00:00+01:00", "amount": 1250, "currency": "EUR"}
        statuses = await post_all(port, [("/push/entrance", period(m)) for m in range(5)] + [("/push/pos", sale)])
        assert statuses == [200] * 6
        await eventually(lambda: len(peer.accepted) == 6, what="the collector to have every record")
        await eventually(lambda: pipeline.buffer.pending.depth == 0, what="the acks to empty the buffer")
        status = await pipeline.status()
        assert status["enrolled"] and status["agent_id"] == "agt_test1"
        assert [s["accepted"] for s in status["sources"]] == [5, 1]
    finally:
        stop.set()
        await run
    assert sorted(type(r).__name__ for r in peer.accepted) == ["Count"] * 5 + ["Transaction"]
    assert next(r for r in peer.accepted if isinstance(r, Transaction)).at_ms == 1772960400000
    written = json.loads(pipeline.status_path.read_text())
    assert written["running"] is False and written["buffer"]["acked_seq"] == 6


async def start_agent(config: Path, log: Path) -> tuple[asyncio.subprocess.Process, int]:
    """`python -m footfall.agent run` as a real process; returns it with its http_push port once it serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "footfall.agent",
        "run",
        "--config",
        str(config),
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    status_file = config.parent / "state" / "status.json"

    def serving() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"the agent exited with {process.returncode}: {log.read_text()}")
        try:
            status = json.loads(status_file.read_text())
        except (OSError, ValueError):
            return False
        return status.get("pid") == process.pid and status["running"] and status["http_push"]["port"] > 0

    await eventually(serving, within=30, what="the agent subprocess to serve")
    return process, json.loads(status_file.read_text())["http_push"]["port"]


def stored(state: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(f"file:{state / 'buffer.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
    finally:
        conn.close()


def agent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "footfall.agent", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


async def test_sigkill_right_after_the_200s_loses_no_accepted_reading(tmp_path: Path) -> None:
    from footfall.protocol.envelope import unpack_record

    config = write_config(tmp_path)
    log = tmp_path / "agent.log"
    process, port = await start_agent(config, log)
    try:
        bodies = [("/push/entrance", period(m, line)) for m in range(20) for line in ("north", "south")]
        assert await post_all(port, bodies) == [200] * 40
        status = await asyncio.to_thread(agent_cli, "status", "--config", str(config))
        assert status.returncode == 0 and "running (pid" in status.stdout and "entrance: ok" in status.stdout
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    rows = stored(tmp_path / "state")
    records = [unpack_record(body) for _, body in rows]
    taken = {(r.line, r.start_ms) for r in records if isinstance(r, Count)}
    assert len(taken) == 40, "every reading a device got a 200 for is in the buffer after kill -9"

    not_running = await asyncio.to_thread(agent_cli, "status", "--config", str(config))
    assert not_running.returncode == 3
    assert "NOT running" in not_running.stdout and "40 records waiting" in not_running.stdout

    process, port = await start_agent(config, log)
    try:
        resent_and_new = [("/push/entrance", period(0, "north")), ("/push/entrance", period(30, "north"))]
        assert await post_all(port, resent_and_new) == [200, 200]
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    assert process.returncode == 0, log.read_text()
    seqs = [seq for seq, _ in stored(tmp_path / "state")]
    assert seqs == list(range(1, 42)), "the resend was dropped across the restart and seqs continued without reuse"
    assert json.loads((tmp_path / "state" / "status.json").read_text())["running"] is False
    assert "agent_stopped" in log.read_text()


async def test_enroll_and_status_from_the_command_line(tmp_path: Path, peer: PeerCollector) -> None:
    config = write_config(tmp_path)
    done = await asyncio.to_thread(
        agent_cli, "enroll", "--collector", peer.url, "--token", "ffe_test", "--config", str(config)
    )
    assert done.returncode == 0, done.stderr
    assert "enrolled as agt_test1 (acme / store-12, Europe/Paris)" in done.stdout
    refused = await asyncio.to_thread(
        agent_cli, "enroll", "--collector", peer.url, "--token", "ffe_test", "--state-dir", str(tmp_path / "state")
    )
    assert refused.returncode == 1 and "--force" in refused.stderr
    both = await asyncio.to_thread(agent_cli, "enroll", "--collector", peer.url, "--token", "x")
    assert both.returncode == 2 and "exactly one of --config FILE or --state-dir DIR" in both.stderr
    status = await asyncio.to_thread(agent_cli, "status", "--config", str(config), "--json")
    assert status.returncode == 3
    info = json.loads(status.stdout)
    assert info["agent"]["agent_id"] == "agt_test1" and info["running"] is False
    assert "the agent has never run with this state directory" in info["problems"]


def test_config_check_prints_every_problem(tmp_path: Path) -> None:
    good = write_config(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["config", "check", str(good)])
    assert (
        result.exit_code == 0
        and "OK" in result.output
        and "entrance (http_push, generic-json-counter)" in result.output
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(
        good.read_text()
        .replace('"generic-json-pos"', '"generic-pos"')
        .replace('listen = "127.0.0.1:0"', 'listen = "x"')
    )
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "has 2 problems" in result.output
    assert "http_push.listen: must be host:port" in result.output
    assert "sources[1].adapter: no adapter profile named 'generic-pos' (source 'till')" in result.output


def test_running_with_a_broken_config_exits_1_with_the_problems(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[agent]\nlog_levl = 'info'\n")
    done = agent_cli("run", "--config", str(bad))
    assert (
        done.returncode == 1
        and "agent.log_levl: unknown key" in done.stderr
        and "did you mean 'log_level'" in done.stderr
    )


def test_an_unsafe_key_stops_the_agent_with_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "identity.json").write_text(
        json.dumps(
            {
                "agent_id": "a",
                "collector_url": "http://127.0.0.1:9",
                "organization": "o",
                "site": "s",
                "timezone": "UTC",
                "enrolled_at": "x",
            }
        )
    )
    (state / "agent.key").write_text("junk")
    os.chmod(state / "agent.key", 0o644)
    done = agent_cli("run", "--config", str(config))
    assert done.returncode == 1 and f"chmod 600 {state / 'agent.key'}" in done.stderr
