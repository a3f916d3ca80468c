"""Helpers for the transports' tests: pseudo-terminal pairs as serial ports, intakes over real buffers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import SourceConfig
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.protocol.records import Record


class Pty:
    """A pseudo-terminal pair: the agent opens `link` (a symlink to the slave), the test writes the master."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self._slave)
        self.point()

    def point(self) -> None:
        """(Re)point the symlink at this pair's slave, as udev does for a re-plugged adapter."""
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.slave_path)
        os.replace(tmp, self.link)

    def write(self, data: bytes) -> None:
        """Bytes from the 'device'."""
        os.write(self.master, data)

    def read(self) -> bytes:
        """Bytes the agent wrote (requests), or b''."""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return b""

    def close(self) -> None:
        """Unplug: both ends closed; the agent's reads fail."""
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[list[Pty]]:
    """Make pty pairs with `Pty(path)`; every one is closed at the end."""
    made: list[Pty] = []
    yield made
    for pty in made:
        pty.close()


def new_pty(made: list[Pty], link: Path) -> Pty:
    """A pty pair registered for cleanup."""
    pty = Pty(link)
    made.append(pty)
    return pty


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Buffer]:
    """A real buffer committing at once."""
    async with Buffer(tmp_path / "buffer.sqlite", max_size=64 * 1024 * 1024, commit_interval=0.0) as opened:
        yield opened


def make_intake(
    buffer: Buffer, name: str, transport: str, adapter: str, options: Any, zone: Any = None
) -> SourceIntake:
    """An intake for one source, with the shipped profile `adapter`."""
    profile = load_profiles()[adapter]
    source = SourceConfig(name=name, transport=transport, adapter=adapter, options=options)
    return SourceIntake(source, profile, default_extractors()[profile.format], buffer, zone=zone)


async def records_of(buffer: Buffer, kind: type[Record] | None = None) -> list[Any]:
    """The buffer's records, optionally of one type."""
    records = await buffer.records()
    return [r for r in records if kind is None or isinstance(r, kind)]


async def stopped(source: Any) -> None:
    """Stop a transport, even when the test failed half-way."""
    with contextlib.suppress(asyncio.CancelledError):
        await source.stop()
