"""A simulated store: people counters and a POS pushing to an agent over HTTP, keeping the ground truth.

Used by `footfall demo` and by end-to-end tests and benchmarks. It speaks the shipped generic
JSON adapters (firmware-adapters/generic-json-counter and generic-json-pos), so what it sends is
what a real device configured for those formats would send.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp


@dataclass
class Truth:
    """What the simulator generated and the agent accepted (answered 2xx)."""

    entries: int = 0
    exits: int = 0
    sales: int = 0
    sales_minor: int = 0
    refunds: int = 0
    refunds_minor: int = 0
    readings: int = 0
    rejected: int = 0
    by_door: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreShape:
    """Which devices the simulated store has, and the agent push paths they post to."""

    doors: tuple[str, ...] = ("/push/door-1", "/push/door-2", "/push/door-3", "/push/door-4")
    pos: tuple[str, ...] = ("/push/pos-1", "/push/pos-2")
    currency: str = "EUR"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimulatedStore:
    """Posts counts and transactions at a steady rate; `truth` counts only what the agent accepted."""

    def __init__(self, agent_url: str, *, shape: StoreShape | None = None, rate: float = 20.0, seed: int = 7) -> None:
        self.agent_url = agent_url.rstrip("/")
        self.shape = shape or StoreShape()
        self.rate = rate
        self.truth = Truth()
        self._random = random.Random(seed)
        self._period_end: dict[str, int] = {}
        self._txn = 0

    async def run(self, stop: asyncio.Event) -> Truth:
        """Post until `stop` is set, each device on its own schedule; returns the truth of what was accepted."""
        devices = [*self.shape.doors, *self.shape.pos]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(*(self._device(session, path, stop, len(devices)) for path in devices))
        return self.truth

    async def _device(self, session: aiohttp.ClientSession, path: str, stop: asyncio.Event, devices: int) -> None:
        # Like a real device, each posts on its own and waits for its answer before the next post.
        interval = devices / self.rate
        next_at = time.monotonic() + self._random.random() * interval
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            await (self._post_count(session, path) if path in self.shape.doors else self._post_sale(session, path))
            next_at += interval

    async def _post(self, session: aiohttp.ClientSession, path: str, body: Mapping[str, object]) -> bool:
        async with session.post(self.agent_url + path, json=body) as resp:
            await resp.read()
            if resp.status // 100 == 2:
                self.truth.readings += 1
                return True
            self.truth.rejected += 1
            return False

    async def _post_count(self, session: aiohttp.ClientSession, path: str) -> None:
        now_ms = int(time.time() * 1000)
        # Periods follow each other without overlap, as a real counter's do.
        start = self._period_end.get(path, now_ms - 1000)
        end = max(now_ms, start + 1)
        entries, exits = self._random.randint(0, 4), self._random.randint(0, 4)
        body = {"line": "main", "start": _iso(start), "end": _iso(end), "in": entries, "out": exits}
        if await self._post(session, path, body):
            self._period_end[path] = end
            self.truth.entries += entries
            self.truth.exits += exits
            door_in, door_out = self.truth.by_door.get(path, (0, 0))
            self.truth.by_door[path] = (door_in + entries, door_out + exits)

    async def _post_sale(self, session: aiohttp.ClientSession, path: str) -> None:
        self._txn += 1
        refund = self._random.random() < 0.05
        amount = self._random.randint(199, 15_000)
        body = {
            "terminal": path.rsplit("/", 1)[-1],
            "id": f"T-{self._txn:06d}",
            "at": _iso(int(time.time() * 1000)),
            "kind": "refund" if refund else "sale",
            "amount": amount,
            "currency": self.shape.currency,
            "items": self._random.randint(1, 6),
        }
        if await self._post(session, path, body):
            if refund:
                self.truth.refunds += 1
                self.truth.refunds_minor += amount
            else:
                self.truth.sales += 1
                self.truth.sales_minor += amount
