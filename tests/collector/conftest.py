"""Fixtures for the collector's tests. The shared ones (PostgreSQL, a running collector) are in tests/fixtures/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "") -> None:
    """Poll `check` until it is true; fail after `within` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def no_task_leaks() -> AsyncIterator[None]:
    """The suite's task-leak check, minus the task running this teardown and tasks older than the check.

    With pytest-asyncio 1.x an async fixture's teardown runs in a task of its own, which the
    suite-wide version (tests/fixtures/leaks.py) counts as a leak (as tests/agent/conftest.py
    notes). The `collector` fixtures request this one, so it is torn down after them and sees
    whether stopping a collector really ended all its tasks.
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
