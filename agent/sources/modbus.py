"""Modbus RTU and TCP: poll each unit's registers on its interval; one frame per poll.

Sources that name the same bus (the same `serial_port` in rtu mode, the same host and port in
tcp mode) share one connection: a serial bus is one port, and many TCP gateways take a single
client. One task per bus keeps the connection (reconnecting with backoff and jitter); one task
per unit polls it. The bus lock serializes requests, so a unit that stops answering costs each
of its polls one `timeout` of bus time and the other units keep being read; its own health
goes degraded with the reason (no answer, or the exception code's meaning), theirs stays ok.

A poll reads the blocks the unit's register map needs (agent/decode/formats/modbus.py) and
hands the words over as one frame, `{"unit": 1, "registers": {"holding": {"0": 7, ...}}}`,
stamped with the time of the poll. The counter arithmetic (agent/decode/counters.py) turns
cumulative registers into deltas, wraps and resets, in the same buffer commit as the state.

An RTU bus configured by its kernel name (`/dev/ttyUSB0`) is followed by its by-id link once
it has opened, as a serial source is (agent/sources/port_names.py): a USB adapter re-plugged as
`/dev/ttyUSB1` is found again, and another device that took `/dev/ttyUSB0` is not polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from footfall.agent.buffer import BufferError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.config.transports import ModbusSourceOptions
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.modbus import ModbusOptions
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, SourceError
from footfall.agent.sources.modbus_client import ModbusBus, ModbusDeviceError, ModbusNoAnswer
from footfall.agent.sources.port_names import BY_ID, PortFollower
from footfall.agent.sources.serial import port_problem
from footfall.agent.sources.supervise import Backoff, RateLimitedLog, keep_running, now_ms, stop_tasks

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.modbus")
# Keys that describe the bus, not the unit: every source on one bus must agree on them.
_BUS_KEYS = ("mode", "host", "port", "serial_port", "baud", "parity", "stop_bits", "byte_size")


@dataclass(slots=True)
class Unit:
    """One configured source: a unit id on a bus, with its register map."""

    intake: SourceIntake
    options: ModbusSourceOptions
    map: ModbusOptions
    last_ms: int = 0

    def stamp(self) -> int:
        """A poll time strictly after the previous one."""
        self.last_ms = max(now_ms(), self.last_ms + 1)
        return self.last_ms


@dataclass(slots=True)
class Bus:
    """Units sharing one connection."""

    key: tuple[object, ...]
    options: ModbusSourceOptions
    follower: PortFollower  # rtu: the serial port, or its by-id link once noted
    units: list[Unit] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


def bus_key(options: ModbusSourceOptions) -> tuple[object, ...]:
    """What identifies a bus."""
    return ("tcp", options.host, options.port) if options.mode == "tcp" else ("rtu", options.serial_port)


def make_bus(options: ModbusSourceOptions, timeout: float) -> ModbusBus:
    """A pymodbus-backed connection for these bus settings."""
    return ModbusBus(
        mode=options.mode,
        host=options.host,
        port=options.port,
        serial_port=options.serial_port,
        baud=options.baud,
        parity=options.parity,
        stop_bits=options.stop_bits,
        byte_size=options.byte_size,
        timeout=timeout,
    )


async def read_unit(client: ModbusBus, unit_id: int, registers: ModbusOptions) -> dict[str, dict[str, int]]:
    """Every block the register map needs, as {function: {address: word}}."""
    words: dict[str, dict[str, int]] = {}
    for function, start, count in registers.blocks():
        values = await client.read(function, start, count, unit_id)
        block = words.setdefault(function, {})
        for offset, value in enumerate(values):
            block[str(start + offset)] = value
    return words


class ModbusSource:
    """Every modbus source of the agent, grouped by bus."""

    def __init__(self, intakes: Sequence[SourceIntake], *, by_id: str = BY_ID) -> None:
        self.by_id = by_id
        self.buses: dict[tuple[object, ...], Bus] = {}
        for intake in intakes:
            options = intake.source.options
            if not isinstance(options, ModbusSourceOptions):
                raise TypeError(f"source {intake.source.name!r} is not a modbus source")
            registers = intake.profile.options
            if not isinstance(registers, ModbusOptions):
                raise SourceError(
                    f"source {intake.source.name!r}: adapter {intake.profile.name} is not a Modbus register map "
                    "(format = 'modbus'); pick a modbus adapter such as generic-modbus-counter",
                    retryable=False,
                )
            key = bus_key(options)
            bus = self.buses.setdefault(key, Bus(key, options, PortFollower(options.serial_port, by_id)))
            for name in _BUS_KEYS:
                if getattr(bus.options, name) != getattr(options, name):
                    first = bus.units[0].intake.source.name
                    raise SourceError(
                        f"sources {first!r} and {intake.source.name!r} share the bus {key[1]} but differ in "
                        f"{name}; one bus has one {name}",
                        retryable=False,
                    )
            bus.units.append(Unit(intake, options, registers))
        self._log = RateLimitedLog(log, every=60.0)

    @classmethod
    def from_config(cls, config: AgentConfig, intakes: Sequence[SourceIntake]) -> ModbusSource:
        """The modbus transport for these sources."""
        return cls(intakes)

    async def start(self) -> None:
        """One task per bus; a bus that is down now is retried, not fatal."""
        for bus in self.buses.values():
            first = bus.units[0]
            backoff = Backoff.of(first.options)
            bus.task = asyncio.create_task(
                keep_running(
                    f"modbus:{bus.key[1]}",
                    functools.partial(self._session, bus, backoff),
                    [u.intake.health for u in bus.units],
                    backoff,
                    what=f"Modbus bus {bus.key[1]}",
                ),
                name=f"footfall-modbus:{bus.key[1]}",
            )

    async def stop(self) -> None:
        """Stop polling; a poll being committed finishes first."""
        tasks = [b.task for b in self.buses.values() if b.task is not None]
        await stop_tasks(tasks)
        for bus in self.buses.values():
            bus.task = None

    async def _session(self, bus: Bus, backoff: Backoff) -> None:
        options = bus.options
        if options.mode == "rtu":
            where = await asyncio.to_thread(bus.follower.where)
            if not await asyncio.to_thread(os.path.exists, where):
                raise SourceError(port_problem(where, FileNotFoundError(2, "missing"), by_id=self.by_id))
            options = replace(options, serial_port=where)
        client = make_bus(options, max(u.options.timeout for u in bus.units))
        try:
            await client.connect()
            noted = await asyncio.to_thread(bus.follower.opened) if options.mode == "rtu" else ""
            if noted:
                event(
                    log,
                    "serial_stable_name",
                    logging.WARNING,
                    bus=client.label,
                    port=bus.options.serial_port,
                    by_id=noted,
                    hint=bus.follower.hint("serial_port"),
                )
            for unit in bus.units:
                unit.intake.health.up()
            event(log, "modbus_connected", bus=client.label, units=len(bus.units))
            async with asyncio.TaskGroup() as group:
                for unit in bus.units:
                    group.create_task(
                        self._poll(bus, client, unit), name=f"footfall-modbus-poll:{unit.intake.source.name}"
                    )
        except* SourceError as group_error:
            raise group_error.exceptions[0] from None
        finally:
            client.close()

    async def _poll(self, bus: Bus, client: ModbusBus, unit: Unit) -> None:
        intake, name = unit.intake, unit.intake.source.name
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            async with bus.lock:
                at_ms = unit.stamp()
                try:
                    words = await read_unit(client, unit.options.unit, unit.map)
                except (ModbusDeviceError, ModbusNoAnswer) as exc:
                    intake.health.failed(now_ms(), "receiving", str(exc))
                    self._log("modbus_unit_error", key=name, source=name, bus=client.label, error=str(exc))
                    words = None
            if words is not None:
                payload = json.dumps({"unit": unit.options.unit, "registers": words}, sort_keys=True).encode()
                frame = Frame(
                    name, payload, received_ms=at_ms, meta={"bus": client.label, "unit": str(unit.options.unit)}
                )
                with contextlib.suppress(DecodeError, BufferError):
                    # Both are counted in the health by the intake; a cumulative counter loses nothing
                    # when a poll is not stored (its state did not move: the next poll carries the delta).
                    await intake(frame)
            next_at += unit.options.interval
            delay = next_at - loop.time()
            if delay < 0:  # a slow bus: skip the missed slots rather than poll in a burst
                next_at = loop.time() + unit.options.interval
                delay = unit.options.interval
            await asyncio.sleep(delay)
