"""MQTT transport against a real mosquitto: taking and acking, garbage, a broker restart, redelivery after kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from footfall.agent.buffer import Buffer, read_stats
from footfall.agent.config.transports import MqttOptions
from footfall.agent.sources.mqtt import MqttSource, default_client_id
from footfall.protocol.records import Count

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import make_intake, records_of, stopped
from tests.fixtures.mqtt import Broker, publish


def report(minute: int, entries: int, exits: int) -> bytes:
    """A Milesight periodic report for 10:<minute>Z."""
    start = f"2026-03-08T10:{minute:02d}:00Z"
    end = f"2026-03-08T10:{minute + 5:02d}:00Z"
    return json.dumps(
        {
            "time_info": {"start_time": start, "end_time": end, "time_zone": "UTC+0:00"},
            "line_periodic_data": [{"line": 1, "line_name": "Main", "total": {"in": entries, "out": exits}}],
        }
    ).encode()


def options(port: int, topic: str, **extra: object) -> MqttOptions:
    """Options with a unique client id and fast reconnects."""
    return MqttOptions(
        host="127.0.0.1",
        port=port,
        topics=(topic,),
        client_id=f"test-{uuid.uuid4().hex[:12]}",
        reconnect_min=0.05,
        reconnect_max=0.3,
        keepalive=5,
        **extra,  # type: ignore[arg-type]
    )


async def test_messages_are_taken_and_garbage_is_counted(mqtt_broker: Broker, store: Buffer) -> None:
    topic = f"test/{uuid.uuid4().hex}/vs133"
    intake = make_intake(store, "vs133", "mqtt", "milesight-vs1xx", options(mqtt_broker.port, topic + "/#"))
    source = MqttSource([intake])
    await source.start()
    try:
        await eventually(lambda: intake.health.connected, what="the subscription")
        for body in (report(0, 3, 1), report(5, 4, 2)):
            await asyncio.to_thread(publish, mqtt_broker.port, f"{topic}/data", body)
        await asyncio.to_thread(publish, mqtt_broker.port, f"{topic}/data", b"\x00\x01 not json")
        await asyncio.to_thread(publish, mqtt_broker.port, f"{topic}/data", report(0, 3, 1))  # a resend
        await eventually(
            lambda: intake.health.accepted == 2 and intake.health.dropped == 1, what="two reports and a resend"
        )
    finally:
        await stopped(source)
    counts = await records_of(store, Count)
    assert [(c.entries, c.exits) for c in counts] == [(3, 1), (4, 2)]
    assert intake.health.garbage == 1


async def test_a_broker_restart_reconnects_and_resubscribes(tmp_path: Path, store: Buffer) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    topic = f"test/{uuid.uuid4().hex}/data"
    intake = make_intake(store, "vs133", "mqtt", "milesight-vs1xx", options(broker.port, topic))
    source = MqttSource([intake])
    await source.start()
    try:
        await eventually(lambda: intake.health.connected, what="the subscription")
        await asyncio.to_thread(publish, broker.port, topic, report(0, 1, 0))
        await eventually(lambda: intake.health.accepted == 1, what="the first report")
        broker.stop()
        await eventually(lambda: intake.health.state == "down", what="the lost broker")
        broker.start()
        await eventually(lambda: intake.health.connected, within=15, what="the reconnect")
        await asyncio.to_thread(publish, broker.port, topic, report(5, 2, 0))
        await eventually(lambda: intake.health.accepted == 2, what="a report after the restart")
    finally:
        await stopped(source)
        broker.stop()
    assert intake.health.reconnects >= 1
    assert [c.entries for c in await records_of(store, Count)] == [1, 2]


def test_client_ids_are_stable_and_safe() -> None:
    assert default_client_id("door 1/a") == default_client_id("door 1/a")
    assert " " not in default_client_id("door 1/a") and "/" not in default_client_id("door 1/a")


def _agent_config(folder: Path, port: int, topic: str, client_id: str, commit: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "state"\n\n[buffer]\ncommit_interval = "{commit}"\n\n'
        f'[[sources]]\nname = "vs133"\ntransport = "mqtt"\nadapter = "milesight-vs1xx"\n'
        f'host = "127.0.0.1"\nport = {port}\ntopics = ["{topic}"]\nclient_id = "{client_id}"\n'
        'reconnect_min = "50ms"\nreconnect_max = "300ms"\n'
    )
    return path


def _status(folder: Path) -> dict[str, object]:
    try:
        return json.loads((folder / "state" / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _source_stat(folder: Path, key: str) -> int:
    sources = _status(folder).get("sources") or []
    return int(sources[0][key]) if sources else 0  # type: ignore[index]


async def test_a_message_not_committed_before_kill_9_is_redelivered_once(mqtt_broker: Broker, tmp_path: Path) -> None:
    """kill -9 between receipt and commit: no PUBACK left, so the broker delivers it again to the restarted agent."""
    topic = f"test/{uuid.uuid4().hex}/data"
    client_id = f"test-kill-{uuid.uuid4().hex[:8]}"
    # A 15 s group-commit window: the first message is committed within one window (the agent may
    # have committed at start), the second, published right after that commit, waits for the next
    # window, and the agent is killed before that.
    config = _agent_config(tmp_path, mqtt_broker.port, topic, client_id, "15s")
    log = (tmp_path / "agent.log").open("wb")
    cmd = [sys.executable, "-m", "footfall", "agent", "run", "--config", str(config)]
    agent = _spawn(cmd, log)
    try:
        await eventually(lambda: _connected(tmp_path, agent.pid), within=20, what="the agent subscribed")
        await asyncio.to_thread(publish, mqtt_broker.port, topic, report(0, 7, 3))
        await eventually(lambda: _source_stat(tmp_path, "accepted") == 1, within=40, what="the first message taken")
        await asyncio.to_thread(publish, mqtt_broker.port, topic, report(5, 8, 4))
        await eventually(lambda: _source_stat(tmp_path, "received") == 2, within=20, what="the second message received")
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        stats = read_stats(tmp_path / "state" / "buffer.sqlite")
        assert stats is not None and stats.next_seq == 2, "killed before the second commit: only the first was taken"
        (tmp_path / "state" / "status.json").unlink()
        config = _agent_config(tmp_path, mqtt_broker.port, topic, client_id, "20ms")
        agent = _spawn(cmd, log)
        await eventually(
            lambda: _source_stat(tmp_path, "accepted") == 1, within=20, what="the redelivered message taken"
        )
        agent.send_signal(signal.SIGTERM)
        await asyncio.to_thread(agent.wait, 20)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
    async with Buffer(tmp_path / "state" / "buffer.sqlite", max_size=1 << 26, commit_interval=0) as buffer:
        counts = await records_of(buffer, Count)
    assert [(c.entries, c.exits) for c in counts] == [(7, 3), (8, 4)], "each taken exactly once"


def _spawn(cmd: list[str], log: Any) -> subprocess.Popen[bytes]:
    """Start a real agent process (Popen returns at once: it does not block the loop)."""
    return subprocess.Popen(cmd, stdout=log, stderr=log)


def _connected(folder: Path, pid: int) -> bool:
    status = _status(folder)
    sources = status.get("sources") or []
    return status.get("pid") == pid and bool(sources) and bool(sources[0].get("connected"))  # type: ignore[index, union-attr]


async def test_tls_and_credentials(tmp_path: Path, store: Buffer) -> None:
    broker = Broker(tmp_path / "broker", users={"gateway": "right"}, tls=True)
    broker.start()
    topic = f"test/{uuid.uuid4().hex}/data"
    tls = {"tls": True, "ca_file": str(broker.ca_file)}
    wrong = make_intake(
        store,
        "wrong",
        "mqtt",
        "milesight-vs1xx",
        options(broker.port, topic, username="gateway", password="nope", **tls),
    )
    good = make_intake(
        store,
        "good",
        "mqtt",
        "milesight-vs1xx",
        options(broker.port, topic, username="gateway", password="right", **tls),
    )
    source = MqttSource([wrong, good])
    await source.start()
    try:
        await eventually(lambda: good.health.connected, what="the TLS connection with the right password")
        await eventually(lambda: "refused us" in wrong.health.last_error, what="the wrong password named")
        auth = {"username": "gateway", "password": "right"}
        await asyncio.to_thread(publish, broker.port, topic, report(0, 2, 1), auth=auth, ca_file=broker.ca_file)
        await eventually(lambda: good.health.accepted == 1, what="a report over TLS")
    finally:
        await stopped(source)
        broker.stop()
    assert not wrong.health.connected and wrong.health.state == "down"
