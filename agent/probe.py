"""`footfall agent probe`: connect to one device, show what it really sends and what the adapter makes of it.

For technicians at the install: nothing is stored and nothing is uploaded. Every frame is shown
in hex and as text, then decoded with `--adapter` (if given) into the readings the agent would
take. When nothing arrives, the probe says what it could be, in plain words: a missing or busy
port, a permission problem, a wrong baud rate (bytes arrive but never form frames), a Modbus
exception code's meaning, a refused or unreachable address.

Each probe is an async function writing lines through `say`, so the CLI prints them and the
tests read them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import aiohttp
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, extract_frame
from footfall.agent.decode.formats import Extractor, default_extractors
from footfall.agent.decode.formats.modbus import ModbusOptions
from footfall.agent.decode.framing import Framer
from footfall.agent.decode.profile import Profile
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.decode.readings import CumulativeCount
from footfall.agent.sources.base import SourceError
from footfall.agent.sources.modbus import read_unit
from footfall.agent.sources.modbus_client import ModbusBus, ModbusDeviceError, ModbusNoAnswer
from footfall.agent.sources.mqtt_client import MqttClient
from footfall.agent.sources.port_names import BY_ID, stable_name
from footfall.agent.sources.serial import PortReader, open_port
from footfall.protocol.records import to_wire

Say = Callable[[str], None]
SHOW_BYTES = 96
# Below this share of bytes forming frames, a serial line is probably at the wrong speed or parity.
GOOD_RATIO = 0.5


class ProbeFailed(Exception):
    """The probe could not reach the device; the message says why and what to try."""


@dataclass
class Adapter:
    """A profile and its extractor, for decoding what the probe sees."""

    profile: Profile
    extractor: Extractor
    zone: ZoneInfo | None


def load_adapter(name: str | None, timezone: str = "") -> Adapter | None:
    """The named shipped profile, or None; ProbeFailed naming the known ones."""
    if not name:
        return None
    profiles = load_profiles()
    if name not in profiles:
        raise ProbeFailed(f"no adapter named {name!r}; known: {', '.join(sorted(profiles))}")
    profile = profiles[name]
    return Adapter(profile, default_extractors()[profile.format], ZoneInfo(timezone) if timezone else None)


def show(data: bytes) -> str:
    """Bytes as hex and as text (non-printables as dots), cut to a screenful."""
    cut = data[:SHOW_BYTES]
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in cut)
    more = f" ... (+{len(data) - SHOW_BYTES} bytes)" if len(data) > SHOW_BYTES else ""
    return f"{len(data)} bytes\n    hex:  {cut.hex(' ')}{more}\n    text: {text}"


def decode(adapter: Adapter | None, payload: bytes, say: Say, *, source: str = "probe") -> bool:
    """Print the readings the adapter makes of `payload`; False when it refuses it."""
    if adapter is None:
        return True
    context = DecodeContext(source=source, zone=adapter.zone, received_ms=int(time.time() * 1000))
    try:
        extraction = extract_frame(adapter.profile, adapter.extractor, payload, context)
    except DecodeError as exc:
        say(f"  adapter {adapter.profile.name}: REFUSED: {exc}")
        return False
    readings = extraction.readings
    if extraction.garbage:
        say(f"  adapter {adapter.profile.name}: skipped {extraction.garbage} part(s) it does not know "
            "(e.g. printer commands); the rest was read")
    if not readings:
        say(f"  adapter {adapter.profile.name}: no reading in this frame (not an error)")
    for reading in readings:
        if isinstance(reading, CumulativeCount):
            say(f"  reading (running totals): {json.dumps(asdict(reading))}")
        else:
            wire = {k: v for k, v in to_wire(reading).items() if k != "seq"}
            say(f"  reading: {json.dumps(wire, ensure_ascii=False)}")
    return True


async def probe_serial(
    say: Say,
    *,
    port: str,
    baud: int,
    parity: str = "none",
    stop_bits: int = 1,
    byte_size: int = 8,
    adapter: Adapter | None = None,
    request: bytes = b"",
    duration: float = 10.0,
    max_frames: int = 20,
    by_id: str = BY_ID,
) -> int:
    """Read a serial port for `duration` seconds; returns how many frames the adapter took (bytes, without one).

    A missing port's error lists the ports present (by-id names first); a port given by its
    kernel name is shown with its by-id name, the one to put in agent.toml.
    """
    try:
        opened = open_port(port, baud=baud, parity=parity, stop_bits=stop_bits, byte_size=byte_size, by_id=by_id)
    except SourceError as exc:
        raise ProbeFailed(str(exc)) from None
    stable = stable_name(port, by_id)
    if stable:
        say(f"{port} is {stable}: use that name in agent.toml (it survives re-plugging; {port} may not)")
    reader = PortReader(opened, port)
    framing = adapter.profile.framing if adapter is not None else None
    framer = Framer(framing) if framing is not None else None
    say(f"listening on {port} at {baud} baud, {byte_size}{parity[0].upper()}{stop_bits} for {duration:g}s")
    total = framed = garbage = frames = taken = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    if request:
        reader.write(request)
        say(f"sent request {request!r}")
    try:
        while frames < max_frames:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                data = await reader.read(left)
            except SourceError as exc:
                raise ProbeFailed(str(exc)) from None
            if data is None:
                break
            total += len(data)
            if framer is None:
                say("received " + show(data))
                continue
            for piece in framer.feed(data):
                if piece.kind == "garbage":
                    garbage += len(piece.data)
                    say(f"garbage ({piece.note}): " + show(piece.data))
                    continue
                framed += len(piece.data)
                if piece.kind == "skipped":
                    continue
                frames += 1
                say(f"frame {frames}: " + show(piece.data))
                taken += decode(adapter, piece.data, say)
    finally:
        reader.close()
    say(f"{total} bytes in {duration:g}s; {frames} frames; {garbage} bytes of garbage")
    if total == 0:
        say(
            "NOTHING ARRIVED: check the device is powered and sending, the wiring (TX/RX crossed; "
            "RS-485 A/B not swapped), and that the device is not waiting to be asked (--request)"
        )
    elif framer is not None and framed < total * GOOD_RATIO:
        say(
            f"most bytes ({garbage} of {total}) formed no frame: probably the WRONG BAUD RATE or parity "
            f"(tried {baud} {parity}); common rates are 9600, 19200, 38400, 115200"
        )
    return taken if adapter is not None else total


async def probe_modbus(
    say: Say,
    *,
    mode: Literal["tcp", "rtu"],
    host: str = "",
    port: int = 502,
    serial_port: str = "",
    baud: int = 9600,
    parity: str = "none",
    stop_bits: int = 1,
    byte_size: int = 8,
    unit: int = 1,
    function: Literal["holding", "input"] = "holding",
    address: int = 0,
    count: int = 2,
    within: float = 1.0,
    adapter: Adapter | None = None,
) -> list[int]:
    """One read of `unit`: the adapter's register map, or `count` registers from `address`."""
    bus = ModbusBus(
        mode=mode,
        host=host,
        port=port,
        serial_port=serial_port,
        baud=baud,
        parity=parity,
        stop_bits=stop_bits,
        byte_size=byte_size,
        timeout=within,
    )
    label = f"{host}:{port}" if mode == "tcp" else serial_port
    if mode == "rtu":
        try:
            open_port(serial_port, baud=baud, parity=parity, stop_bits=stop_bits, byte_size=byte_size).close()
        except SourceError as exc:
            raise ProbeFailed(str(exc)) from None
    try:
        await bus.connect()
    except SourceError as exc:
        raise ProbeFailed(str(exc)) from None
    say(f"connected to the Modbus {mode} bus {label}; reading unit {unit}")
    try:
        if adapter is not None and isinstance(adapter.profile.options, ModbusOptions):
            words = await read_unit(bus, unit, adapter.profile.options)
            flat = [w for block in words.values() for w in block.values()]
            for fn, block in words.items():
                say(f"{fn} registers: " + ", ".join(f"{a}={w} (0x{w:04x})" for a, w in block.items()))
            decode(adapter, json.dumps({"unit": unit, "registers": words}).encode(), say)
            return flat
        words_list = await bus.read(function, address, count, unit)
    except ModbusDeviceError as exc:
        raise ProbeFailed(str(exc)) from None
    except ModbusNoAnswer as exc:
        raise ProbeFailed(f"{exc}; check the unit id, and for RTU the baud rate, parity and the A/B wiring") from None
    except SourceError as exc:
        raise ProbeFailed(str(exc)) from None
    finally:
        bus.close()
    say(
        f"{function} registers {address}-{address + count - 1}: "
        + ", ".join(f"{address + i}={w} (0x{w:04x})" for i, w in enumerate(words_list))
    )
    if count >= 2:
        hi_lo = (words_list[0] << 16) | words_list[1]
        lo_hi = (words_list[1] << 16) | words_list[0]
        say(f"as u32 at {address}: high word first = {hi_lo}, low word first = {lo_hi}")
    return words_list


async def probe_http(
    say: Say,
    *,
    url: str,
    headers: dict[str, str] | None = None,
    token: str = "",
    username: str = "",
    password: str = "",
    within: float = 10.0,
    adapter: Adapter | None = None,
) -> int:
    """One GET of `url`; returns the HTTP status."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    auth = aiohttp.BasicAuth(username, password) if username else None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within), auth=auth) as session,
            session.get(url, headers=sent) as response,
        ):
            body = await response.read()
            status = response.status
            shown = {
                k: v for k, v in response.headers.items() if k.lower() in ("content-type", "etag", "last-modified")
            }
    except aiohttp.ClientConnectorError as exc:
        raise ProbeFailed(f"cannot connect to {url}: {exc.os_error.strerror or exc}") from None
    except TimeoutError:
        raise ProbeFailed(f"no answer from {url} within {within:g}s") from None
    except aiohttp.ClientError as exc:
        raise ProbeFailed(f"GET {url} failed: {exc}") from None
    say(f"HTTP {status} {json.dumps(shown)}")
    say("body " + show(body))
    if status in (401, 403):
        say("the device refused our credentials: check --token or --username/--password")
    elif 200 <= status < 300:
        decode(adapter, body, say)
    if {k.lower() for k in shown} & {"etag", "last-modified"}:
        say("the device offers validators: polls will be conditional (304 when nothing changed)")
    return status


async def probe_mqtt(
    say: Say,
    *,
    host: str,
    port: int = 1883,
    topics: tuple[str, ...],
    username: str = "",
    password: str = "",
    tls: bool = False,
    ca_file: str = "",
    adapter: Adapter | None = None,
    duration: float = 30.0,
    max_messages: int = 10,
) -> int:
    """Subscribe for `duration` seconds (a throw-away session: never the agent's); returns messages seen."""
    client = MqttClient(
        host=host,
        port=port,
        topics=topics,
        qos=1,
        client_id=f"footfall-probe-{uuid.uuid4().hex[:8]}",
        clean_session=True,
        username=username,
        password=password,
        tls=tls,
        ca_file=ca_file,
    )
    seen = 0
    try:
        async with client:
            say(f"subscribed to {', '.join(topics)} on {host}:{port} for {duration:g}s")
            try:
                async with asyncio.timeout(duration):
                    async for message in client.messages:
                        seen += 1
                        say(f"message {seen} on {message.topic} (qos {message.qos}): " + show(message.payload))
                        decode(adapter, message.payload, say)
                        client.ack(message)
                        if seen >= max_messages:
                            break
            except TimeoutError:
                pass
    except SourceError as exc:
        raise ProbeFailed(str(exc)) from None
    if not seen:
        say(
            f"NOTHING ARRIVED on {', '.join(topics)} in {duration:g}s: check the device's broker address and "
            "topic (a filter such as 'milesight/#' shows everything under it), and its report interval"
        )
    return seen
