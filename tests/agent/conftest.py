"""Fixtures for the agent's tests: real SQLite buffers in tmp_path, a real scripted collector on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from footfall.agent.buffer import Buffer

from tests.agent.peer import PeerCollector


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    """An open buffer with no commit window (tests that need one make their own)."""
    async with Buffer(tmp_path / "buffer.sqlite", max_size=64 * 1024 * 1024, commit_interval=0.0) as opened:
        yield opened


@pytest.fixture
async def peer() -> AsyncIterator[PeerCollector]:
    """A scripted collector with one enrollment token, `ffe_test`."""
    collector = PeerCollector(tokens={"ffe_test": ("acme", "store-12", "Europe/Paris")})
    await collector.start()
    yield collector
    await collector.stop()


async def eventually(check: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, what: str = "") -> None:
    """Poll `check` until it is true; fail after `within` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(0.01)
