"""Serial devices (RS-232/485, USB adapters): bytes from a port, cut into frames by the profile's `[framing]`.

One task per port, each under `keep_running`: open the port (pyserial sets baud, parity, stop
bits and byte size, and takes an exclusive lock so a second program cannot read half the
bytes), then read it without blocking the event loop (the port's file descriptor is watched by
the loop; no thread), feed the bytes to a `Framer`, and hand every frame to the intake. When
the port vanishes (USB adapter unplugged: the read fails with EIO, or returns nothing), the
partial frame left is garbage, the source is down, and the task reopens the port with backoff
until it is back. A `/dev/serial/by-id/...` name survives re-plugging; a `/dev/ttyUSB0` may come
back under another number, and another device may take the old one. So when a port configured
by its kernel name opens, the source notes the by-id link that points at the same device (and
logs `serial_stable_name`, suggesting that name for agent.toml); from then on it reconnects
through that link, wherever the adapter went, and never opens the kernel name again while the
link is missing (it says it waits for the device by its id). The noted name lives as long as
the agent runs.

A device that must be asked (CROWDCOUNTER's `R`) gets `request` written every
`request_interval`. A frame's time (the reading time of `[time] source = "agent"` profiles) is
when its last byte arrived, made strictly increasing per device so two frames read in one chunk
stay two readings.

At-most-once from the device's side, by nature: a serial device does not wait for an ack. If
the buffer cannot commit (disk full), the frame is retried, holding the port's later bytes in
the kernel, rather than dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios
from collections.abc import Sequence
from dataclasses import dataclass

import serial
from footfall.agent.config.transports import SerialOptions
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, FrameRefused, Intake, Piece, SourceError, now_ms
from footfall.agent.sources.device import Device, DeviceTransport, options_of
from footfall.agent.sources.port_names import BY_ID, PortFollower, present_ports

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.serial")
_PARITY = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}
READ_SIZE = 4096


def open_port(
    port: str, *, baud: int, parity: str, stop_bits: int, byte_size: int, by_id: str = BY_ID
) -> serial.Serial:
    """Open and configure a port for non-blocking reads; SourceError in plain words when it cannot be."""
    try:
        opened = serial.Serial(
            port,
            baudrate=baud,
            parity=_PARITY[parity],
            stopbits=serial.STOPBITS_TWO if stop_bits == 2 else serial.STOPBITS_ONE,
            bytesize=byte_size,
            timeout=None,
            exclusive=True,
        )
        # pyserial leaves VMIN=0, VTIME=0, with which a read of an idle port returns b"" exactly
        # like a hung-up one. With VMIN=1 and O_NONBLOCK an idle read is EAGAIN, and b"" (or
        # EIO) means the device is gone.
        fd = opened.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        os.set_blocking(fd, False)
        return opened
    except (serial.SerialException, OSError, ValueError, termios.error) as exc:
        raise SourceError(port_problem(port, exc, by_id=by_id)) from None


def port_problem(port: str, exc: BaseException, *, by_id: str = BY_ID) -> str:
    """What is wrong with a port that would not open, and what to do about it."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or (code is None and not os.path.exists(port)):
        return f"serial port {port} does not exist (USB adapter unplugged?); {present_ports(by_id)}"
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied on {port}: add the agent's user to the dialout group "
            "(sudo usermod -aG dialout <user>, then log in again) or fix the port's udev rule"
        )
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return (
            f"serial port {port} is busy: another program has it open (ModemManager, a terminal, "
            "another footfall source); close it"
        )
    return f"cannot open serial port {port}: {exc}"


def _unescape(text: str) -> bytes:
    """A config string as bytes: U+0000-U+00FF are the bytes 0x00-0xFF (TOML writes "\\r", "\\u001b")."""
    return text.encode("latin-1")


class PortReader:
    """Reads an open port's file descriptor from the event loop, without a thread."""

    def __init__(self, port: serial.Serial, name: str) -> None:
        self.port = port
        self.name = name
        self._fd = port.fileno()
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._ready.set)

    async def read(self, silence: float | None = None) -> bytes | None:
        """The next bytes; None after `silence` seconds without any; SourceError when the port is gone."""
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                data = None
            except OSError as exc:
                raise SourceError(f"serial port {self.name} went away: {exc.strerror or exc}") from None
            if data is not None:
                if not data:
                    raise SourceError(f"serial port {self.name} hung up (device or adapter disconnected)")
                return data
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), silence)
            except TimeoutError:
                return None

    def write(self, data: bytes) -> None:
        """Send bytes (short requests: the kernel buffers them)."""
        try:
            os.write(self._fd, data)
        except OSError as exc:
            raise SourceError(f"cannot write to serial port {self.name}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Stop watching and close the port."""
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError, serial.SerialException):
            self.port.close()


@dataclass(slots=True, eq=False)
class SerialDevice(Device[SerialOptions]):
    """One configured serial source and its running state."""

    follower: PortFollower  # the configured port, or its by-id link once noted
    skipped: int = 0
    opened: str = ""  # the name the port was last opened by

    @property
    def what(self) -> str:
        """The port."""
        return f"serial port {self.options.port}"


class SerialSource(DeviceTransport[SerialDevice]):
    """Every serial source of the agent, one task each."""

    kind = "serial"
    logger = log

    def __init__(self, intakes: Sequence[Intake], *, by_id: str = BY_ID) -> None:
        self.by_id = by_id
        super().__init__(intakes)

    def device(self, intake: Intake) -> SerialDevice:
        """A device for each source, followed by its port's stable name."""
        options = options_of(intake, SerialOptions, "serial")
        return SerialDevice(intake, options, Backoff.of(options), PortFollower(options.port, self.by_id))

    async def start(self) -> None:
        """Start one task per port; a port that is missing now is retried, not fatal."""
        for device in self.devices:
            if device.intake.framer() is None:
                raise SourceError(
                    f"source {device.name!r}: adapter {device.intake.adapter} has no [framing], so it "
                    "cannot be read from a serial port; use an adapter made for serial devices",
                    retryable=False,
                )
        await super().start()

    async def session(self, device: SerialDevice) -> None:
        """Open the port, then read and frame its bytes until it goes away."""
        options, intake = device.options, device.intake
        framer = intake.framer()
        assert framer is not None, "start() refuses a source whose adapter has no [framing]"
        where = await asyncio.to_thread(device.follower.where)
        port = open_port(
            where,
            baud=options.baud,
            parity=options.parity,
            stop_bits=options.stop_bits,
            byte_size=options.byte_size,
            by_id=self.by_id,
        )
        device.opened = where
        if await asyncio.to_thread(device.follower.opened):
            event(
                log,
                "serial_stable_name",
                logging.WARNING,
                source=device.name,
                port=options.port,
                by_id=device.follower.stable,
                hint=device.follower.hint(),
            )
        reader = PortReader(port, where)
        intake.health.up()
        event(log, "serial_open", source=device.name, port=where, baud=options.baud)
        requester = None
        if options.request:
            requester = asyncio.create_task(
                self._request(reader, _unescape(options.request), options.request_interval),
                name=f"footfall-serial-request:{device.name}",
            )
        try:
            while True:
                data = await reader.read(options.quiet_after or None)
                if data is None:
                    intake.health.failed(now_ms(), "receiving", f"no data for {options.quiet_after:g}s from {where}")
                    continue
                for piece in framer.feed(data):
                    await self._piece(device, piece)
        finally:
            if requester is not None:
                requester.cancel()
                with contextlib.suppress(asyncio.CancelledError, SourceError):
                    await requester
            reader.close()
            for piece in framer.flush():
                await self._piece(device, piece)

    async def _request(self, reader: PortReader, request: bytes, every: float) -> None:
        while True:
            reader.write(request)
            await asyncio.sleep(every)

    async def _piece(self, device: SerialDevice, piece: Piece) -> None:
        intake, name = device.intake, device.name
        if piece.kind == "skipped":
            device.skipped += 1
            return
        if piece.kind == "garbage":
            intake.health.threw_away(now_ms(), len(piece.data), f"{len(piece.data)} bytes of garbage: {piece.note}")
            self.repeated(
                "serial_garbage",
                key=name,
                source=name,
                port=device.opened,
                bytes=len(piece.data),
                why=piece.note,
                sample=piece.data[:16].hex(" "),
            )
            return
        frame = Frame(name, piece.data, received_ms=device.stamp(), meta={"port": device.opened})
        with contextlib.suppress(FrameRefused):  # counted and logged by the intake; nothing was written
            await device.deliver(frame)
