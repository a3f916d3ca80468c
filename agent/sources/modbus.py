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
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from footfall.agent.config.transports import ModbusSourceOptions
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, FrameRefused, Intake, NotStored, SourceError, SourceHealth, now_ms
from footfall.agent.sources.device import Device, DeviceTransport, options_of
from footfall.agent.sources.modbus_client import ModbusBus, ModbusDeviceError, ModbusNoAnswer
from footfall.agent.sources.port_names import BY_ID, PortFollower
from footfall.agent.sources.serial import port_problem

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.modbus")
# Keys that describe the bus, not the unit: every source on one bus must agree on them.
_BUS_KEYS = ("mode", "host", "port", "serial_port", "baud", "parity", "stop_bits", "byte_size")


@runtime_checkable
class RegisterMap(Protocol):
    """What a unit's adapter says to read: a Modbus register map (decode/formats/modbus.py's options)."""

    def blocks(self) -> Sequence[tuple[Literal["holding", "input"], int, int]]:
        """The (function, start, count) reads that cover every register."""
        ...


@dataclass(slots=True, eq=False)
class Unit(Device[ModbusSourceOptions]):
    """One configured source: a unit id on a bus, with its register map."""

    map: RegisterMap


@dataclass(slots=True, eq=False)
class Bus:
    """Units sharing one connection."""

    key: tuple[object, ...]
    options: ModbusSourceOptions
    follower: PortFollower  # rtu: the serial port, or its by-id link once noted
    units: list[Unit] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        """How logs name the bus."""
        return f"modbus:{self.key[1]}"

    @property
    def healths(self) -> list[SourceHealth]:
        """Every unit's health."""
        return [unit.intake.health for unit in self.units]

    @property
    def backoff(self) -> Backoff:
        """The first unit's reconnect delays (every unit's keys are its own, the bus has one connection)."""
        return self.units[0].backoff

    @property
    def what(self) -> str:
        """The bus."""
        return f"Modbus bus {self.key[1]}"


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


async def read_unit(client: ModbusBus, unit_id: int, registers: RegisterMap) -> dict[str, dict[str, int]]:
    """Every block the register map needs, as {function: {address: word}}."""
    words: dict[str, dict[str, int]] = {}
    for function, start, count in registers.blocks():
        values = await client.read(function, start, count, unit_id)
        block = words.setdefault(function, {})
        for offset, value in enumerate(values):
            block[str(start + offset)] = value
    return words


class ModbusSource(DeviceTransport[Bus]):
    """Every modbus source of the agent, grouped by bus."""

    kind = "modbus"
    logger = log

    def __init__(self, intakes: Sequence[Intake], *, by_id: str = BY_ID) -> None:
        self.by_id = by_id
        super().__init__(intakes)

    def connections(self, intakes: Sequence[Intake]) -> list[Bus]:
        """The buses, each with the units on it; sources that share a bus must agree on its settings."""
        buses: dict[tuple[object, ...], Bus] = {}
        for intake in intakes:
            options = options_of(intake, ModbusSourceOptions, "modbus")
            registers = intake.format_options
            if not isinstance(registers, RegisterMap):
                raise SourceError(
                    f"source {intake.name!r}: adapter {intake.adapter} is not a Modbus register map "
                    "(format = 'modbus'); pick a modbus adapter such as generic-modbus-counter",
                    retryable=False,
                )
            key = bus_key(options)
            bus = buses.setdefault(key, Bus(key, options, PortFollower(options.serial_port, self.by_id)))
            for name in _BUS_KEYS:
                if getattr(bus.options, name) != getattr(options, name):
                    first = bus.units[0].name
                    raise SourceError(
                        f"sources {first!r} and {intake.name!r} share the bus {key[1]} but differ in "
                        f"{name}; one bus has one {name}",
                        retryable=False,
                    )
            bus.units.append(Unit(intake, options, Backoff.of(options), registers))
        return list(buses.values())

    async def session(self, bus: Bus) -> None:
        """Connect to the bus, then poll every unit on it until the connection is lost."""
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
                        self._poll(bus, client, unit), name=f"footfall-modbus-poll:{unit.name}"
                    )
        except* SourceError as group_error:
            raise group_error.exceptions[0] from None
        finally:
            client.close()

    async def _poll(self, bus: Bus, client: ModbusBus, unit: Unit) -> None:
        intake, name = unit.intake, unit.name
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            async with bus.lock:
                at_ms = unit.stamp()
                try:
                    words = await read_unit(client, unit.options.unit, unit.map)
                except (ModbusDeviceError, ModbusNoAnswer) as exc:
                    intake.health.failed(now_ms(), "receiving", str(exc))
                    self.repeated("modbus_unit_error", key=name, source=name, bus=client.label, error=str(exc))
                    words = None
            if words is not None:
                payload = json.dumps({"unit": unit.options.unit, "registers": words}, sort_keys=True).encode()
                frame = Frame(
                    name, payload, received_ms=at_ms, meta={"bus": client.label, "unit": str(unit.options.unit)}
                )
                with contextlib.suppress(FrameRefused, NotStored):
                    # Both are counted in the health by the intake; a cumulative counter loses nothing
                    # when a poll is not stored (its state did not move: the next poll carries the delta).
                    await intake(frame)
            next_at += unit.options.interval
            delay = next_at - loop.time()
            if delay < 0:  # a slow bus: skip the missed slots rather than poll in a burst
                next_at = loop.time() + unit.options.interval
                delay = unit.options.interval
            await asyncio.sleep(delay)
