"""The one module that imports pymodbus: a Modbus bus connection with footfall's own small API.

pymodbus renames things between minor releases (`slave=` became `device_id=`, datastores were
replaced by SimDevice), so it is pinned in pyproject.toml and seen nowhere else: if the pin
moves, this file is the whole port. The client runs on the event loop (pymodbus's serial
transport watches the port's file descriptor; no thread). Its own reconnect loop is off:
reconnecting belongs to the transport's supervisor, which tracks health and backs off with
jitter.

Errors come out as three kinds: `ModbusDeviceError` (the unit answered with an exception
code: its meaning is spelled out), `ModbusNoAnswer` (the unit did not answer in time: the bus
is fine, this unit is not), and SourceError (the connection itself is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from footfall.agent.sources.base import SourceError
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

# pymodbus logs every timeout at ERROR with its own wording; the transport reports them itself.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

EXCEPTION_MEANINGS = {
    1: "illegal function: the unit does not support this read (try function = 'input' or 'holding')",
    2: "illegal data address: the unit has no register there (check the address, and base 0 or 1)",
    3: "illegal data value: the unit refused the request's count or value",
    4: "server device failure: the unit failed while answering",
    5: "acknowledge: the unit accepted a long operation",
    6: "server device busy: the unit is busy, try again later",
    8: "memory parity error",
    10: "gateway path unavailable: the gateway has no route to this unit id",
    11: "gateway target device failed to respond: nothing answers at this unit id behind the gateway",
}
_PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}


class ModbusDeviceError(Exception):
    """The unit answered with a Modbus exception code."""

    def __init__(self, unit: int, code: int) -> None:
        self.unit = unit
        self.code = code
        meaning = EXCEPTION_MEANINGS.get(code, "unknown exception code")
        super().__init__(f"unit {unit} answered Modbus exception {code}: {meaning}")


class ModbusNoAnswer(Exception):
    """The unit did not answer within the timeout (the bus itself still works)."""


class ModbusBus:
    """One TCP connection or one serial port, shared by every unit on it."""

    def __init__(
        self,
        *,
        mode: Literal["tcp", "rtu"],
        host: str = "",
        port: int = 502,
        serial_port: str = "",
        baud: int = 9600,
        parity: str = "none",
        stop_bits: int = 1,
        byte_size: int = 8,
        timeout: float = 1.0,
    ) -> None:
        self.mode = mode
        self.label = f"{host}:{port}" if mode == "tcp" else serial_port
        self.timeout = timeout
        self._tcp = (host, port)
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if mode == "tcp":
            self._client = AsyncModbusTcpClient(
                host, port=port, timeout=timeout, retries=0, reconnect_delay=0, name=f"modbus-tcp:{host}:{port}"
            )
        else:
            self._client = AsyncModbusSerialClient(
                serial_port,
                framer=FramerType.RTU,
                baudrate=baud,
                parity=_PARITY[parity],
                stopbits=stop_bits,
                bytesize=byte_size,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
                name=f"modbus-rtu:{serial_port}",
            )

    @property
    def connected(self) -> bool:
        """Whether the connection is up."""
        return bool(self._client.connected)

    async def connect(self) -> None:
        """Open the connection; SourceError saying why not."""
        if self.mode == "tcp":
            await tcp_reachable(*self._tcp, within=max(self.timeout, 3.0))
        if not await self._client.connect():
            raise SourceError(f"cannot connect to the Modbus {self.mode} bus {self.label}")

    async def read(self, function: Literal["holding", "input"], address: int, count: int, unit: int) -> list[int]:
        """`count` registers from `address` of `unit`; ModbusDeviceError, ModbusNoAnswer or SourceError."""
        call = self._client.read_holding_registers if function == "holding" else self._client.read_input_registers
        try:
            response = await asyncio.wait_for(call(address, count=count, device_id=unit), self.timeout * 1.5 + 0.5)
        except (TimeoutError, ModbusIOException) as exc:
            if not self._client.connected:
                raise SourceError(f"the Modbus bus {self.label} closed: {exc}") from None
            raise ModbusNoAnswer(
                f"unit {unit} did not answer within {self.timeout:g}s (wrong unit id, baud or wiring?)"
            ) from None
        except ConnectionException as exc:
            raise SourceError(f"the Modbus bus {self.label} is not connected: {exc}") from None
        except ModbusException as exc:
            raise ModbusNoAnswer(f"unit {unit}: {exc}") from None
        if response.isError():
            raise ModbusDeviceError(unit, int(getattr(response, "exception_code", 0)))
        registers = list(response.registers)
        if len(registers) < count:
            raise ModbusNoAnswer(f"unit {unit} answered {len(registers)} registers, {count} were asked")
        return registers[:count]

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError, ModbusException):
            self._client.close()


async def tcp_reachable(host: str, port: int, *, within: float) -> None:
    """Open and close a TCP connection, to name the failure in plain words (refused, no route, timeout)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    except TimeoutError:
        raise SourceError(
            f"no answer from {host}:{port} within {within:g}s (wrong address, device off, or a firewall)"
        ) from None
    except ConnectionRefusedError:
        raise SourceError(
            f"{host}:{port} refused the connection: the device is up but nothing listens on port {port}"
        ) from None
    except OSError as exc:
        raise SourceError(
            f"cannot reach {host}:{port}: {exc.strerror or exc} (no route: check cabling and IP)"
        ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
