"""pymodbus's own server as the Modbus device of the tests, over TCP or RTU on a pseudo-terminal.

The test side's only import of pymodbus (the agent's is agent/sources/modbus_client.py). Each
unit's registers are a plain list the test sets; a unit can be made to answer with an
exception code, or to fall silent (the server then sends nothing, as a dead unit on a bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import tty
from collections.abc import Iterable

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

REGISTERS = 16


class ModbusPeer:
    """Units 1..n with 16 registers each (holding and input share them)."""

    def __init__(self, units: Iterable[int]) -> None:
        self.registers = {unit: [0] * REGISTERS for unit in units}
        self.exception: dict[int, int] = {}
        self.silent: set[int] = set()
        self.reads: dict[int, int] = dict.fromkeys(self.registers, 0)
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port = 0

    def set_u32(self, unit: int, address: int, value: int, *, low_word_first: bool = False) -> None:
        """Store a 32-bit value in two registers."""
        words = [(value >> 16) & 0xFFFF, value & 0xFFFF]
        if low_word_first:
            words.reverse()
        self.registers[unit][address : address + 2] = words

    def _devices(self) -> list[SimDevice]:
        return [
            SimDevice(
                id=unit,
                simdata=SimData(0, values=[0] * REGISTERS, datatype=DataType.REGISTERS),
                action=functools.partial(self._action, unit),
            )
            for unit in self.registers
        ]

    async def _action(
        self,
        unit: int,
        _function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        _values: object,
    ) -> ExcCodes | None:
        if unit in self.silent:
            raise NoSuchIdException(f"unit {unit} is silent")  # the server then answers nothing
        if unit in self.exception:
            return ExcCodes(self.exception[unit])
        self.reads[unit] += 1
        regs = self.registers[unit]
        for k in range(count):
            current[address - start_address + k] = regs[address + k]
        return None

    async def serve_tcp(self) -> int:
        """Listen on a free loopback port; returns it."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = ModbusTcpServer(self._devices(), address=("127.0.0.1", self.port), ignore_missing_devices=True)
        await self.server.serve_forever(background=True)
        return self.port

    async def serve_rtu(self, port: str, baud: int = 19200) -> None:
        """Serve RTU on a serial port (one end of a pty bridge)."""
        self.server = ModbusSerialServer(
            self._devices(), framer=FramerType.RTU, port=port, baudrate=baud, ignore_missing_devices=True
        )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


class PtyBridge:
    """Two pty pairs joined master to master: a null-modem cable between two serial ports by path."""

    def __init__(self) -> None:
        self.master_a, self._slave_a = os.openpty()
        self.master_b, self._slave_b = os.openpty()
        for fd in (self.master_a, self.master_b):
            tty.setraw(fd)
            os.set_blocking(fd, False)
        self.port_a = os.ttyname(self._slave_a)
        self.port_b = os.ttyname(self._slave_b)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master_a, self._copy, self.master_a, self.master_b)
        self._loop.add_reader(self.master_b, self._copy, self.master_b, self.master_a)

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        with contextlib.suppress(OSError):
            os.write(dst, data)

    def close(self) -> None:
        """Cut the cable."""
        for fd in (self.master_a, self.master_b):
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(fd)
        for fd in (self.master_a, self.master_b, self._slave_a, self._slave_b):
            with contextlib.suppress(OSError):
                os.close(fd)
