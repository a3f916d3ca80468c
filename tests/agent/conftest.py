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


@pytest.fixture
async def no_task_leaks() -> AsyncIterator[None]:
    """The suite's task-leak check, overridden here to exclude the task that runs the teardown itself.

    With pytest-asyncio 1.x an async fixture's teardown runs in a task of its own, which the
    suite-wide version (tests/fixtures/leaks.py) counts as a leak; reported to its owner.
    Tasks that existed before the test (other fixtures') are not this test's leaks either.
    """
    before = set(asyncio.all_tasks())
    yield
    deadline = time.monotonic() + 2
    while True:
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me and t not in before and not t.done()]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    for task in pending:
        task.cancel()
    if pending:
        pytest.fail(f"asyncio tasks left running: {sorted(t.get_name() + ' ' + repr(t.get_coro()) for t in pending)}")
