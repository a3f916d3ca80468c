"""Serial port names: by-id links listed first with the kernel device each points at, in the wizard and `probe`.

The by-id folder is a temporary folder of symlinks to pseudo-terminals, as udev makes them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from footfall.agent import wizard
from footfall.agent.probe import ProbeFailed, probe_serial
from footfall.agent.sources.port_names import list_ports, present_ports, stable_name

from tests.agent.sources.conftest import Pty, new_pty
from tests.agent.sources.test_serial import link_to

FTDI = "usb-FTDI_FT232R_USB_UART_A12345-if00-port0"
PROLIFIC = "usb-Prolific_Technology_Inc._USB-Serial_Controller-if00-port0"


@pytest.fixture
def gateway(tmp_path: Path, ptys: list[Pty]) -> tuple[Path, Path, list[Pty]]:
    """A by-id folder and a dev folder: ttyUSB0 (FTDI) and ttyUSB1 (Prolific) with by-id links, ttyUSB2 without."""
    by_id, dev = tmp_path / "by-id", tmp_path / "dev"
    by_id.mkdir()
    dev.mkdir()
    made = [new_pty(ptys, dev / f"ttyUSB{n}") for n in range(3)]
    link_to(by_id / FTDI, made[0])
    link_to(by_id / PROLIFIC, made[1])
    return by_id, dev, made


def test_ports_are_listed_by_id_first_with_their_kernel_device(gateway: tuple[Path, Path, list[Pty]]) -> None:
    by_id, dev, made = gateway
    (by_id / "usb-gone-port0").symlink_to(dev / "ttyUSB9")  # a dangling link is not a port
    ports = list_ports(str(by_id), (str(dev / "ttyUSB*"),))
    assert [(p.name, p.stable) for p in ports] == [
        (str(by_id / FTDI), True),
        (str(by_id / PROLIFIC), True),
        (str(dev / "ttyUSB2"), False),  # kernel names no by-id link covers
    ]
    assert ports[0].device == made[0].slave_path
    assert ports[0].describe() == f"{by_id / FTDI} (now {made[0].slave_path})"
    assert stable_name(str(dev / "ttyUSB1"), str(by_id)) == str(by_id / PROLIFIC)
    assert stable_name(str(dev / "ttyUSB2"), str(by_id)) == ""
    assert stable_name(str(by_id / FTDI), str(by_id)) == "", "a by-id name is already stable"
    assert stable_name(str(dev / "ttyUSB9"), str(by_id)) == ""
    empty = by_id.parent / "empty"
    assert present_ports(str(empty), ()) == f"no serial adapters are plugged in ({empty} is empty)"


async def test_probe_names_the_ports_present_and_the_stable_name(gateway: tuple[Path, Path, list[Pty]]) -> None:
    by_id, dev, made = gateway
    with pytest.raises(ProbeFailed) as failed:
        await probe_serial(print, port=str(dev / "ttyUSB7"), baud=9600, by_id=str(by_id), duration=0.1)
    message = str(failed.value)
    assert f"serial port {dev / 'ttyUSB7'} does not exist" in message
    assert f"ports present: {by_id / FTDI} (now {made[0].slave_path}), {by_id / PROLIFIC}" in message

    said: list[str] = []
    made[1].write(b"\x01\x02")
    await probe_serial(said.append, port=str(dev / "ttyUSB1"), baud=9600, by_id=str(by_id), duration=0.1)
    assert f"{dev / 'ttyUSB1'} is {by_id / PROLIFIC}: use that name in agent.toml" in said[0]


def test_the_wizard_offers_by_id_names(tmp_path: Path, gateway: tuple[Path, Path, list[Pty]]) -> None:
    by_id, dev, made = gateway
    profiles = wizard.catalogue()
    picked = wizard.parse_device("name=door,adapter=terabee-evo,transport=serial,baud=115200", profiles,
                                 by_id=str(by_id))
    assert picked.options["port"] == str(by_id / FTDI), "the first by-id name is suggested"
    assert f"{by_id / FTDI} (now {made[0].slave_path})" in picked.note and str(by_id / PROLIFIC) in picked.note
    firmed = wizard.parse_device(f"name=till,adapter=escpos-receipt,transport=serial,port={dev / 'ttyUSB1'}",
                                 profiles, by_id=str(by_id))
    assert firmed.options["port"] == str(by_id / PROLIFIC), "a kernel name is written by its by-id name"
    assert f"the stable name of {dev / 'ttyUSB1'}" in firmed.note
    plain = wizard.parse_device(f"name=beam,adapter=pointsix-beam,transport=serial,port={dev / 'ttyUSB2'}",
                                profiles, by_id=str(by_id))
    assert plain.options["port"] == str(dev / "ttyUSB2") and plain.note == ""

    output = tmp_path / "agent.toml"
    plan = wizard.Plan(output=output, state_dir=tmp_path / "state", devices=[picked, firmed, plain])
    text = wizard.render(plan, profiles)
    assert f"# port: the stable name of {dev / 'ttyUSB1'}" in text
    config = wizard.check(text, output)
    assert [s.options.port for s in config.sources] == [str(by_id / FTDI), str(by_id / PROLIFIC), str(dev / "ttyUSB2")]
    assert wizard.port_menu(str(by_id))[0] == f"  - {by_id / FTDI} (now {made[0].slave_path})"
