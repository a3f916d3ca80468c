"""Serial transport against pseudo-terminal pairs: real frames, garbage, split frames, unplug and re-plug."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.clock import Stamp
from footfall.agent.config.sections import SourceConfig
from footfall.agent.config.transports import SerialOptions
from footfall.agent.decode.checksums import compute
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from footfall.agent.sources.serial import SerialSource
from footfall.protocol.records import Count, SensorEvent, Transaction

from tests.agent.conftest import eventually
from tests.agent.sources.conftest import Pty, make_intake, new_pty, records_of, stopped

STABLE = "usb-FTDI_FT232R_USB_UART_A12345-if00-port0"


def pc(entries: int, exits: int) -> bytes:
    """A Terabee count frame."""
    body = (
        b"PC"
        + ((entries - exits) & 0xFFFFFFFF).to_bytes(4, "big")
        + entries.to_bytes(2, "big")
        + exits.to_bytes(2, "big")
    )
    return body + bytes([compute("crc8", body)])


def dd() -> bytes:
    """A Terabee distance frame (skipped)."""
    body = b"DD\x01\x02\x03\x04"
    return body + bytes([compute("crc8", body)])


def fast(port: Path, **extra: object) -> SerialOptions:
    """Serial options that reconnect quickly."""
    return SerialOptions(port=str(port), baud=115200, reconnect_min=0.05, reconnect_max=0.2, **extra)  # type: ignore[arg-type]


async def test_frames_garbage_split_frames_unplug_and_replug(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    link = tmp_path / "ttyEVO"
    pty = new_pty(ptys, link)
    intake = make_intake(store, "door", "serial", "terabee-evo", fast(link))
    source = SerialSource([intake])
    await source.start()
    try:
        await eventually(lambda: intake.health.connected, what="the port to open")
        pty.write(pc(10, 4))  # baseline
        await eventually(lambda: intake.health.accepted == 1, what="the baseline frame")
        pty.write(b"\x00\xff\x13garbage PC!" + dd())  # garbage (with a false header) and a distance frame
        frame = pc(13, 5)
        pty.write(frame[:4])  # a frame split across reads
        pty.write(frame[4:] + dd())
        bad = bytearray(pc(99, 99))
        bad[-1] ^= 0xFF
        pty.write(bytes(bad) + pc(20, 9))
        await eventually(lambda: intake.health.accepted == 3, what="two more frames")
        counts = await records_of(store, Count)
        assert people(counts) == [(3, 1), (7, 4)]
        assert intake.health.garbage >= len(b"\x00\xff\x13garbage PC!") + 1
        assert intake.health.state == "ok"

        pty.close()  # unplug the USB adapter
        await eventually(lambda: intake.health.state == "down", what="the source to go down")
        assert (
            "went away" in intake.health.last_error
            or "hung up" in intake.health.last_error
            or "does not exist" in intake.health.last_error
        )
        os.unlink(link)
        await eventually(lambda: "does not exist" in intake.health.last_error, what="the missing port to be named")

        replugged = new_pty(ptys, link)  # plugged back: the by-id link points at a new tty
        await eventually(lambda: intake.health.connected, what="the port to reopen")
        replugged.write(pc(25, 9))
        await eventually(lambda: intake.health.accepted == 4, what="a frame after re-plugging")
    finally:
        await stopped(source)
    counts = await records_of(store, Count)
    assert people(counts) == [(3, 1), (7, 4), (5, 0)], "counter state survives the reconnect"
    assert intake.health.reconnects == 1
    assert intake.health.accepted == 4
    assert not await records_of(store, SensorEvent), "garbage never becomes a reading or a reset"


async def test_a_missing_port_does_not_block_another(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    link = tmp_path / "ttyGOOD"
    pty = new_pty(ptys, link)
    good = make_intake(store, "good", "serial", "terabee-evo", fast(link))
    missing = make_intake(store, "missing", "serial", "terabee-evo", fast(tmp_path / "ttyNONE"))
    source = SerialSource([missing, good])
    await source.start()
    try:
        await eventually(lambda: good.health.connected, what="the good port")
        pty.write(pc(1, 1) + pc(2, 1))
        await eventually(lambda: good.health.accepted == 2, what="frames on the good port")
        await eventually(lambda: missing.health.state == "down", what="the missing port reported")
        assert f"serial port {tmp_path / 'ttyNONE'} does not exist" in missing.health.last_error
    finally:
        await stopped(source)
    assert people(await records_of(store, Count)) == [(1, 0)]


async def test_line_frames_and_a_request_poll(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    """Point Six lines, with a request written on an interval (as CROWDCOUNTER needs `R`)."""
    link = tmp_path / "ttyBEAM"
    pty = new_pty(ptys, link)
    intake = make_intake(store, "beam", "serial", "pointsix-beam", fast(link, request="R\r", request_interval=0.05))
    source = SerialSource([intake])
    await source.start()

    def line(count: int) -> bytes:
        data = bytes([0x11]) + ((42 << 2) | 1).to_bytes(4, "big") + count.to_bytes(3, "little") + bytes(5)
        return (data + bytes([sum(data) & 0xFF])).hex().upper().encode() + b"\r"

    asked = bytearray()

    def requested() -> bool:
        asked.extend(pty.read())
        return asked.count(b"R\r") >= 2

    try:
        await eventually(requested, what="the request written twice")
        pty.write(line(10) + b"\n")  # CR LF endings are fine
        pty.write(b"\xfe\xfe not hex at all\r")  # a wrong baud rate looks like this
        pty.write(line(13)[:7])
        pty.write(line(13)[7:] + line(16))
        await eventually(lambda: intake.health.accepted == 3 and intake.health.errors == 1, what="four lines")
    finally:
        await stopped(source)
    counts = await records_of(store, Count)
    assert [(c.line, c.entries) for c in counts] == [("42", 1), ("42", 2)]
    assert "not ASCII hex" in intake.health.last_error


async def test_receipts_on_a_serial_line(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    link = tmp_path / "ttyPOS"
    pty = new_pty(ptys, link)
    from zoneinfo import ZoneInfo

    intake = make_intake(store, "till", "serial", "escpos-receipt", fast(link), zone=ZoneInfo("Europe/Paris"))
    source = SerialSource([intake])
    await source.start()
    receipt = b"\x1b@\x1ba\x01Receipt #7\n08/03/2026 11:05\n1 item\nTOTAL   EUR 3.20\n\n\x1dV\x00"
    try:
        await eventually(lambda: intake.health.connected, what="the port")
        pty.write(b"\x10\x04\x01" + receipt[:20])  # a status query between receipts, then half a receipt
        pty.write(receipt[20:] + receipt)  # the rest, and a reprint of the same receipt
        await eventually(lambda: intake.health.dropped == 1, what="two receipts")
    finally:
        await stopped(source)
    (sale,) = await records_of(store, Transaction)
    assert (sale.txn_id, sale.amount_minor, sale.currency, sale.items) == ("7", 320, "EUR", 1)
    # The printed text is kept, the printer's commands are not.
    assert sale.raw == "Receipt #7\n08/03/2026 11:05\n1 item\nTOTAL   EUR 3.20\n\n"
    assert intake.health.dropped == 1


async def test_a_silent_device_is_reported_after_quiet_after(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    link = tmp_path / "ttyQUIET"
    pty = new_pty(ptys, link)
    intake = make_intake(store, "door", "serial", "terabee-evo", fast(link, quiet_after=0.2))
    source = SerialSource([intake])
    await source.start()
    try:
        await eventually(lambda: "no data for 0.2s" in intake.health.last_error, what="silence reported")
        assert intake.health.state == "degraded" and intake.health.connected
        pty.write(pc(1, 0))
        await eventually(lambda: intake.health.state == "ok", what="the device speaking again")
    finally:
        await stopped(source)


def people(counts: list[Count]) -> list[tuple[int, int]]:
    """(entries, exits) of the counts with people (Terabee's quiet spells are zero counts: delta_at = "end")."""
    return [(c.entries, c.exits) for c in counts if c.entries or c.exits]


def link_to(link: Path, pty: Pty) -> None:
    """Point another name at a pty (as udev makes both ttyUSBn and the by-id link)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(pty.slave_path)
    os.replace(tmp, link)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of every structured event `name` logged so far."""
    return [r.fields for r in caplog.records if r.getMessage() == name]  # type: ignore[attr-defined]


async def test_a_port_named_by_its_kernel_name_is_found_again_by_its_id(
    tmp_path: Path, ptys: list[Pty], store: Buffer, caplog: pytest.LogCaptureFixture
) -> None:
    by_id, dev = tmp_path / "by-id", tmp_path / "dev"
    by_id.mkdir()
    dev.mkdir()
    stable = by_id / STABLE
    first = new_pty(ptys, dev / "ttyUSB0")  # the adapter, first found as ttyUSB0
    link_to(stable, first)
    intake = make_intake(store, "door", "serial", "terabee-evo", fast(dev / "ttyUSB0"))
    source = SerialSource([intake], by_id=str(by_id))
    device = source.devices[0]
    caplog.set_level(logging.INFO, logger="footfall.agent.sources")
    await source.start()
    try:
        await eventually(lambda: intake.health.connected, what="ttyUSB0 to open")
        (noted,) = events(caplog, "serial_stable_name")
        assert noted["by_id"] == str(stable) and noted["port"] == str(dev / "ttyUSB0")
        assert f'port = "{stable}"' in str(noted["hint"]), "the technician is told which name to configure"
        first.write(pc(10, 4))  # baseline
        first.write(pc(12, 5))
        await eventually(lambda: intake.health.accepted == 2, what="two frames on ttyUSB0")

        first.close()  # unplugged: udev removes both names
        os.unlink(dev / "ttyUSB0")
        os.unlink(stable)
        await eventually(lambda: "waiting for the device" in intake.health.last_error, what="the wait by id")
        assert str(stable) in intake.health.last_error and intake.health.state == "down"

        second = new_pty(ptys, dev / "ttyUSB1")  # plugged back in, as ttyUSB1 this time
        link_to(stable, second)
        await eventually(lambda: intake.health.connected, what="the adapter found again by its id")
        assert device.opened == str(stable)
        second.write(pc(15, 6))
        await eventually(lambda: intake.health.accepted == 3, what="a frame after the renumbering")

        second.close()  # gone again, and another device takes the old name ttyUSB0
        os.unlink(dev / "ttyUSB1")
        os.unlink(stable)
        await eventually(lambda: not intake.health.connected, what="the source to go down")
        stranger = new_pty(ptys, dev / "ttyUSB0")
        stranger.write(pc(99, 1))
        tried = device.backoff.attempt
        await eventually(lambda: device.backoff.attempt >= tried + 2, what="two more attempts")
        assert not intake.health.connected and intake.health.accepted == 3, "the other device is not read"
        assert "waiting for the device" in intake.health.last_error and str(stable) in intake.health.last_error

        third = new_pty(ptys, dev / "ttyUSB2")  # ours is back
        link_to(stable, third)
        await eventually(lambda: intake.health.connected, what="the adapter back by its id")
        third.write(pc(20, 8))
        await eventually(lambda: intake.health.accepted == 4, what="a frame after the second re-plug")
    finally:
        await stopped(source)
    counts = await records_of(store, Count)
    assert people(counts) == [(2, 1), (3, 1), (5, 2)], "nothing lost, doubled or foreign"
    assert intake.health.reconnects == 2
    assert len(events(caplog, "serial_stable_name")) == 1, "the suggestion is logged once"


async def test_a_port_configured_by_id_needs_no_noting(tmp_path: Path, ptys: list[Pty], store: Buffer) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    new_pty(ptys, by_id / STABLE)
    intake = make_intake(store, "door", "serial", "terabee-evo", fast(by_id / STABLE))
    source = SerialSource([intake], by_id=str(by_id))
    await source.start()
    try:
        await eventually(lambda: intake.health.connected, what="the port to open")
    finally:
        await stopped(source)
    assert source.devices[0].follower.stable == "" and source.devices[0].opened == str(by_id / STABLE)


async def test_a_flapping_port_backs_off_to_its_ceiling_until_a_session_proves_healthy(
    tmp_path: Path, ptys: list[Pty], store: Buffer, caplog: pytest.LogCaptureFixture
) -> None:
    """A device that opens and hangs up at once is not retried at the first delay for ever."""
    link = tmp_path / "ttyFLAP"
    pty = new_pty(ptys, link)
    options = SerialOptions(port=str(link), baud=115200, reconnect_min=0.05, reconnect_max=0.4, stable_after=60.0)
    intake = make_intake(store, "door", "serial", "terabee-evo", options)
    source = SerialSource([intake], by_id=str(tmp_path / "by-id"))
    caplog.set_level(logging.INFO, logger="footfall.agent.sources")
    await source.start()
    try:
        for flap in range(6):
            await eventually(lambda: intake.health.connected and intake.health.reconnects == flap, what="an open")  # noqa: B023
            # The next plug-in is ready before this one hangs up: every failure is a flap, not a missing port.
            nxt = new_pty(ptys, link)
            pty.close()
            pty = nxt
        await eventually(lambda: intake.health.connected and intake.health.reconnects == 6, what="the 7th open")
        pty.write(pc(1, 0))  # this session proves healthy
        await eventually(lambda: intake.health.received == 1, what="a frame")
        nxt = new_pty(ptys, link)
        pty.close()
        await eventually(lambda: intake.health.connected and intake.health.reconnects == 7, what="the 8th open")
    finally:
        await stopped(source)
    delays = [float(str(f["retry_in_s"])) for f in events(caplog, "source_down")]
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert len(delays) == 7, delays
    assert all(c / 2 - 0.01 <= d <= c + 0.01 for c, d in zip(ceilings, delays, strict=False)), delays
    assert delays[6] <= 0.05 + 0.01, f"a healthy session starts the delays again: {delays}"


async def test_two_frames_of_one_chunk_stay_two_readings_however_the_clocks_round(store: Buffer) -> None:
    """The wall clock ticked between the two frames, the monotonic one not yet: both are still counted."""
    profile = load_profiles()["pointsix-beam"]
    source = SourceConfig(name="beam", transport="serial", adapter="pointsix-beam", options=fast(Path("/dev/null")))
    now = [Stamp(1_000_001, 5_000, "boot-1", True), Stamp(1_000_002, 5_000, "boot-1", True)]
    intake = SourceIntake(source, profile, default_extractors()[profile.format], store, stamps=lambda: now.pop(0))

    def line(count: int) -> bytes:
        data = bytes([0x11]) + ((42 << 2) | 1).to_bytes(4, "big") + count.to_bytes(3, "little") + bytes(5)
        return (data + bytes([sum(data) & 0xFF])).hex().upper().encode()

    await intake(Frame("beam", line(10), received_ms=1_000_000))  # a baseline, then the next frame of its chunk
    await intake(Frame("beam", line(14), received_ms=1_000_001))
    assert people(await records_of(store, Count)) == [(2, 2)]
    assert intake.health.dropped == 0
