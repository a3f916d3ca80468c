"""Serial port names: the stable `/dev/serial/by-id/...` links udev makes, and the kernel devices they point at.

A USB serial adapter gets a kernel name (`/dev/ttyUSB0`) in the order adapters were found, so
after a re-plug or a reboot the same adapter may be `/dev/ttyUSB1`, and `/dev/ttyUSB0` another
device. udev also makes a link named after the adapter's vendor, model and serial number in
`/dev/serial/by-id/`, which always points at the current kernel name of that very adapter.
These helpers list the ports with their stable names first, and find the stable name of a
port given by its kernel name. The by-id folder is a parameter everywhere (tests use a folder
of symlinks to pseudo-terminals).

`PortFollower` is what a source keeps per port: once a port configured by its kernel name has
opened, it notes the by-id link of that device and from then on names that link (wherever the
adapter went), or says it waits for it, never the kernel name another device may now have.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

from footfall.agent.sources.base import SourceError

BY_ID = "/dev/serial/by-id"
KERNEL_GLOBS = ("/dev/ttyUSB*", "/dev/ttyACM*")


@dataclass(frozen=True, slots=True)
class PortName:
    """A port as a technician would write it in agent.toml, and the kernel device it is now."""

    name: str
    device: str
    stable: bool

    def describe(self) -> str:
        """`/dev/serial/by-id/usb-FTDI_..-port0 (now /dev/ttyUSB0)`, or the kernel name alone."""
        return f"{self.name} (now {self.device})" if self.stable else self.name


def list_ports(by_id: str = BY_ID, kernel_globs: Sequence[str] = KERNEL_GLOBS) -> list[PortName]:
    """The serial ports present: by-id names first (sorted), then kernel names no by-id link points at."""
    stable: list[PortName] = []
    for link in sorted(glob.glob(os.path.join(by_id, "*"))):
        if os.path.exists(link):  # a dangling link is an adapter udev has not cleaned up yet
            stable.append(PortName(link, os.path.realpath(link), stable=True))
    covered = {p.device for p in stable}
    plain = sorted({path for pattern in kernel_globs for path in glob.glob(pattern)})
    return stable + [PortName(p, p, stable=False) for p in plain if os.path.realpath(p) not in covered]


def stable_name(port: str, by_id: str = BY_ID) -> str:
    """The by-id link that points at the same device as `port` now; '' when there is none (or `port` is one)."""
    if os.path.dirname(os.path.abspath(port)) == os.path.abspath(by_id):
        return ""
    try:
        device = os.path.realpath(port, strict=True)
    except OSError:
        return ""
    for port_name in list_ports(by_id, ()):
        if port_name.device == device:
            return port_name.name
    return ""


def present_ports(by_id: str = BY_ID, kernel_globs: Sequence[str] = KERNEL_GLOBS) -> str:
    """The ports present, in words for an error message: stable names first, each with its kernel name."""
    ports = list_ports(by_id, kernel_globs)
    if not ports:
        return f"no serial adapters are plugged in ({by_id} is empty)"
    return "ports present: " + ", ".join(p.describe() for p in ports)


@dataclass(slots=True)
class PortFollower:
    """The name to open a configured port by: the port itself until its by-id link is noted, then the link."""

    port: str
    by_id: str = BY_ID
    stable: str = ""

    def where(self) -> str:
        """The name to open now; SourceError (waiting for the device by its id) while the noted link is missing."""
        if not self.stable:
            return self.port
        if os.path.exists(self.stable):
            return self.stable
        raise SourceError(
            f"waiting for the device {self.stable} to come back (it was {self.port}); {self.port} is not opened "
            "meanwhile, as another device may have taken that name (restart the agent if the adapter was replaced)"
        )

    def opened(self) -> str:
        """Call once the port opened: the by-id link newly noted for it ('' when none, or already noted)."""
        if self.stable:
            return ""
        self.stable = stable_name(self.port, self.by_id)
        return self.stable

    def hint(self, key: str = "port") -> str:
        """What to tell the technician about the noted link (`key`: the config key that names the port)."""
        return f'set {key} = "{self.stable}" in agent.toml: {self.port} may be another device after a re-plug'
