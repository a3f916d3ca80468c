"""Modbus transport against pymodbus's own server: TCP, RTU over a pty bridge, wrap, reset, exceptions, a dead unit."""

from __future__ import annotations

import ast
import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.transports import ModbusSourceOptions
from footfall.agent.sources.modbus import ModbusSource
from footfall.protocol.records import Count, SensorEvent

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import make_intake, records_of, stopped
from tests.agent.sources.modbus_peer import ModbusPeer, PtyBridge

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def bridge() -> AsyncIterator[PtyBridge]:
    """A null-modem pair of pty ports."""
    made = PtyBridge()
    yield made
    made.close()


def tcp(port: int, unit: int = 1, **extra: object) -> ModbusSourceOptions:
    """Fast-polling TCP options."""
    return ModbusSourceOptions(
        mode="tcp",
        host="127.0.0.1",
        port=port,
        unit=unit,
        interval=0.05,
        timeout=0.3,
        reconnect_min=0.05,
        reconnect_max=0.2,
        **extra,  # type: ignore[arg-type]
    )


async def test_tcp_counts_wrap_and_reset(store: Buffer) -> None:
    peer = ModbusPeer([1])
    port = await peer.serve_tcp()
    intake = make_intake(store, "door", "modbus", "generic-modbus-counter", tcp(port))
    source = ModbusSource([intake])
    peer.set_u32(1, 0, 4294967290)
    peer.set_u32(1, 2, 100)
    await source.start()
    try:
        await eventually(lambda: intake.health.accepted >= 1, what="the baseline poll")
        peer.set_u32(1, 0, 5)  # wrapped: +11
        peer.set_u32(1, 2, 103)
        await eventually(lambda: _sum(store, "entries", 11), what="the wrapped delta")
        peer.set_u32(1, 0, 2)  # the device rebooted
        peer.set_u32(1, 2, 1)
        await eventually(lambda: _sum(store, "entries", 13), what="the delta after the reset")
    finally:
        await stopped(source)
        await peer.stop()
    counts = await records_of(store, Count)
    assert sum(c.entries for c in counts) == 13
    assert sum(c.exits for c in counts) == 4
    kinds = [e.kind for e in await records_of(store, SensorEvent)]
    assert kinds == ["counter_wrap", "counter_reset"]
    assert intake.health.state == "ok"


async def _sum(store: Buffer, channel: str, want: int) -> bool:
    return sum(getattr(c, channel) for c in await records_of(store, Count)) == want


async def test_exception_response_is_named_and_the_unit_recovers(store: Buffer) -> None:
    peer = ModbusPeer([1])
    port = await peer.serve_tcp()
    intake = make_intake(store, "door", "modbus", "generic-modbus-counter", tcp(port))
    source = ModbusSource([intake])
    peer.exception[1] = 2
    await source.start()
    try:
        await eventually(lambda: "illegal data address" in intake.health.last_error, what="the exception's meaning")
        assert intake.health.state == "degraded" and intake.health.connected
        assert not await records_of(store), "an exception response makes no reading"
        del peer.exception[1]
        peer.set_u32(1, 0, 7)
        await eventually(lambda: intake.health.accepted >= 1 and intake.health.state == "ok", what="recovery")
    finally:
        await stopped(source)
        await peer.stop()


async def test_rtu_a_dead_unit_does_not_stall_its_neighbour(store: Buffer, bridge: PtyBridge) -> None:
    peer = ModbusPeer([1, 2])
    await peer.serve_rtu(bridge.port_a)
    rtu = {"mode": "rtu", "serial_port": bridge.port_b, "baud": 19200, "interval": 0.05, "timeout": 0.2}
    one = make_intake(store, "one", "modbus", "generic-modbus-counter", ModbusSourceOptions(unit=1, **rtu))  # type: ignore[arg-type]
    two = make_intake(
        store,
        "two",
        "modbus",
        "generic-modbus-counter",
        ModbusSourceOptions(unit=2, adapter_options={"type": "u16", "registers": {"entries": 0, "exits": 1}}, **rtu),  # type: ignore[arg-type]
    )
    source = ModbusSource([one, two])
    peer.set_u32(1, 0, 10)
    peer.registers[2][0:2] = [65534, 0]
    await source.start()
    try:
        await eventually(lambda: one.health.accepted >= 1 and two.health.accepted >= 1, what="both baselines")
        peer.registers[2][0] = 3  # a 16-bit wrap: +5
        await eventually(lambda: _sum(store, "entries", 5), what="unit 2's wrapped delta")
        peer.silent.add(2)  # unit 2 stops answering
        await eventually(lambda: "did not answer" in two.health.last_error, what="unit 2 reported silent")
        reads = peer.reads[1]
        peer.set_u32(1, 0, 30)  # unit 1 keeps counting and keeps being read
        await eventually(lambda: _sum(store, "entries", 25), what="unit 1 polled while unit 2 is silent")
        assert peer.reads[1] > reads
        assert one.health.state == "ok" and two.health.state == "degraded"
        peer.silent.discard(2)
        peer.registers[2][0] = 4
        await eventually(lambda: _sum(store, "entries", 26), what="unit 2 back")
    finally:
        await stopped(source)
        await peer.stop()
    events = await records_of(store, SensorEvent)
    assert [(e.sensor, e.kind) for e in events] == [("two", "counter_wrap")]


async def test_a_refused_connection_is_down_with_the_reason(store: Buffer) -> None:
    peer = ModbusPeer([1])
    port = await peer.serve_tcp()
    await peer.stop()  # nothing listens there any more
    intake = make_intake(store, "door", "modbus", "generic-modbus-counter", tcp(port))
    source = ModbusSource([intake])
    await source.start()
    try:
        await eventually(lambda: "refused the connection" in intake.health.last_error, what="the refusal")
        assert intake.health.state == "down"
        peer2 = ModbusPeer([1])
        peer2.port = port
        peer2.set_u32(1, 0, 1)
        await _serve_on(peer2, port)
        await eventually(lambda: intake.health.accepted >= 1, what="the reconnect")
        await peer2.stop()
    finally:
        await stopped(source)


async def _serve_on(peer: ModbusPeer, port: int) -> None:
    from pymodbus.server import ModbusTcpServer  # the test peer's own server, on a chosen port

    peer.server = ModbusTcpServer(peer._devices(), address=("127.0.0.1", port), ignore_missing_devices=True)
    await peer.server.serve_forever(background=True)


def test_pymodbus_is_imported_in_one_agent_module_only() -> None:
    importers = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n == "pymodbus" or n.startswith("pymodbus.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["agent/sources/modbus_client.py"]


async def test_noise_on_the_rtu_line_never_makes_a_reading(store: Buffer, bridge: PtyBridge) -> None:
    peer = ModbusPeer([1])
    await peer.serve_rtu(bridge.port_a)
    options = ModbusSourceOptions(mode="rtu", serial_port=bridge.port_b, baud=19200, unit=1, interval=0.05, timeout=0.2)
    intake = make_intake(store, "one", "modbus", "generic-modbus-counter", options)
    source = ModbusSource([intake])
    peer.set_u32(1, 0, 100)
    await source.start()
    noise = bytes((i * 73 + 5) % 256 for i in range(64))
    try:
        await eventually(lambda: intake.health.accepted >= 1, what="the baseline")
        for _ in range(20):  # noise towards the agent, interleaved with real answers
            os.write(bridge.master_b, noise)
            await asyncio.sleep(0.02)
        peer.set_u32(1, 0, 107)
        await eventually(lambda: _sum(store, "entries", 7), what="the true delta after the noise")
    finally:
        await stopped(source)
        await peer.stop()
    assert sum(c.entries for c in await records_of(store, Count)) == 7
    assert not await records_of(store, SensorEvent), "noise never looks like a reset or a wrap"


async def test_rtu_bus_renumbered_after_a_replug_is_found_again_by_its_id(
    tmp_path: Path, store: Buffer, caplog: pytest.LogCaptureFixture
) -> None:
    """The bug the gateways of other agents have: polling stops once /dev/ttyUSB0 came back as /dev/ttyUSB1."""
    by_id, dev = tmp_path / "by-id", tmp_path / "dev"
    by_id.mkdir()
    dev.mkdir()
    stable = by_id / "usb-FTDI_USB_RS485_A98765-if00-port0"
    first, peer = PtyBridge(), ModbusPeer([1])
    await peer.serve_rtu(first.port_a)
    (dev / "ttyUSB0").symlink_to(first.port_b)
    stable.symlink_to(first.port_b)
    options = ModbusSourceOptions(
        mode="rtu", serial_port=str(dev / "ttyUSB0"), baud=19200, unit=1, interval=0.05, timeout=0.2,
        reconnect_min=0.05, reconnect_max=0.2,
    )
    intake = make_intake(store, "door", "modbus", "generic-modbus-counter", options)
    source = ModbusSource([intake], by_id=str(by_id))
    caplog.set_level(logging.INFO, logger="footfall.agent.sources")
    peer.set_u32(1, 0, 10)
    await source.start()
    second: PtyBridge | None = None
    try:
        await eventually(lambda: intake.health.accepted >= 1, what="the baseline poll")
        assert [r.fields["by_id"] for r in caplog.records if r.getMessage() == "serial_stable_name"] == [str(stable)]  # type: ignore[attr-defined]
        peer.set_u32(1, 0, 13)
        await eventually(lambda: _sum(store, "entries", 3), what="a delta on ttyUSB0")

        await peer.stop()  # the RS-485 adapter unplugged: both names go
        first.close()
        os.unlink(dev / "ttyUSB0")
        os.unlink(stable)
        await eventually(lambda: "waiting for the device" in intake.health.last_error, what="the wait by id")

        second, peer = PtyBridge(), ModbusPeer([1])  # plugged back, as ttyUSB1; the counter kept counting
        peer.set_u32(1, 0, 15)
        await peer.serve_rtu(second.port_a)
        (dev / "ttyUSB1").symlink_to(second.port_b)
        stable.symlink_to(second.port_b)
        await eventually(lambda: _sum(store, "entries", 5), what="the count carried on over ttyUSB1")
    finally:
        await stopped(source)
        await peer.stop()
        first.close()
        if second is not None:
            second.close()
    assert not await records_of(store, SensorEvent), "no counter reset was seen"
    assert intake.health.reconnects == 1
