"""Flash wear: bytes the agent writes to disk per day at store load, group commit against one commit per reading.

A real `footfall agent run` takes a store's readings at their real pace for `--minutes`
(default 2) in each configuration, after a short warm-up; the figure is the agent process's
own `write_bytes` (/proc/<pid>/io: what it made the kernel write to storage, counted as pages
are dirtied) over that window, scaled to a day. Store load: `--counters` people counters
(default 20) each pushing a one-minute period when it closes (within a few seconds after the
minute, as interval counters do), and `--tills` POS (default 2) with `--sales-per-hour` sales
each (default 30) at random moments. Configurations, each with a fresh agent:

- group commit: the shipped default (`commit_interval = "1s"`): readings that arrive within
  a second share one fsync'd commit, acks commit without their own fsync; status.json on
  tmpfs, as the systemd unit's RuntimeDirectory= puts it;
- naive: `commit_interval = "0s"`, one commit per reading, status.json on tmpfs too;
- group commit, status on flash: the first, but with status.json (rewritten every 2 s) in
  the state directory, as when the agent runs outside systemd.

Everything the agent writes counts: the buffer's WAL and checkpoints, the seq marks, and
status.json when it is on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from .common import machine
from .figures import Figure, FigureReport
from .gateway import AgentProcess, Devices, PlainCollector, stopping

NAME = "flash"
ABOUT = "bytes written to disk per day at store load, group commit vs naive"
WARMUP_S = 15.0
DAY_S = 86400.0


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The flash benchmark's options."""
    group.add_argument("--minutes", type=float, default=2.0, help="measuring window per configuration (2)")
    group.add_argument("--counters", type=int, default=20, help="people counters in the store (20)")
    group.add_argument("--tills", type=int, default=2, help="POS terminals (2)")
    group.add_argument("--sales-per-hour", type=float, default=30.0, help="sales per till per hour (30)")


async def run(args: argparse.Namespace) -> FigureReport:
    """Measure both configurations, one after the other, each with a fresh agent and state directory."""
    report = FigureReport(NAME, machine=machine())
    report.setup = {
        "window per configuration": f"{args.minutes:g} min after {WARMUP_S:g} s of warm-up",
        "store": f"{args.counters} counters (a 1-minute period each minute), {args.tills} tills "
        f"({args.sales_per_hour:g} sales/h each)",
    }
    results = {}
    for label, interval, tmpfs in (
        ("group commit", "1s", True), ("naive", "0s", True), ("group commit, status on flash", "1s", False)
    ):
        results[label] = await _measure(args, interval, tmpfs)
    readings_per_day = (args.counters * 1440 + args.tills * args.sales_per_hour * 24)
    for label, (written, commits, seconds) in results.items():
        per_day = written / seconds * DAY_S
        report.add(Figure(f"{label}: bytes written per day", per_day, "B", note=f"{per_day / 2**20:,.0f} MiB/day"))
        report.add(Figure(f"{label}: commits per hour", commits / seconds * 3600, "1/h"))
        report.add(Figure(f"{label}: bytes written per reading", per_day / readings_per_day, "B"))
    grouped, naive = (results[k][0] / results[k][2] for k in ("group commit", "naive"))
    report.add(Figure(
        "naive / group commit", naive / grouped if grouped else 0.0, "x",
        note="how much more the naive agent writes",
    ))
    return report


async def _measure(args: argparse.Namespace, interval: str, tmpfs: bool) -> tuple[int, int, float]:
    """(write_bytes, commits, seconds) of one agent over the window."""
    collector = PlainCollector()
    await collector.start()
    with (
        tempfile.TemporaryDirectory(prefix="footfall-bench-flash-", dir="/var/tmp") as folder,
        tempfile.TemporaryDirectory(prefix="footfall-bench-run-", dir="/dev/shm") as runtime,
    ):
        agent = AgentProcess(Path(folder), collector.url, commit_interval=interval, counters=args.counters,
                             tills=args.tills, runtime_dir=Path(runtime) if tmpfs else None)
        await agent.start()
        try:
            with stopping(agent):
                async with aiohttp.ClientSession() as session:
                    devices = Devices(agent, session)
                    store = asyncio.create_task(_store(devices, args))
                    try:
                        await asyncio.sleep(WARMUP_S)
                        before, commits_before, start = agent.io(), agent.status()["buffer"]["commits"], time.time()
                        await asyncio.sleep(args.minutes * 60)
                        after, status, end = agent.io(), agent.status(), time.time()
                    finally:
                        store.cancel()
                        await asyncio.gather(store, return_exceptions=True)
        finally:
            await collector.down()
    commits = status["buffer"]["commits"] - commits_before
    return after["write_bytes"] - before["write_bytes"], commits, end - start


async def _store(devices: Devices, args: argparse.Namespace) -> None:
    """The store at its real pace: each counter when its period closes, sales at random."""
    rng = random.Random(7)
    phases = [rng.uniform(0.2, 3.0) for _ in range(args.counters)]
    start = time.time()
    minute = 0
    sale = 0
    in_flight: set[asyncio.Task[None]] = set()
    try:
        while True:
            base = start + minute * 60
            events = [(base + phase, door) for door, phase in enumerate(phases)]
            sales_this_minute = [(base + rng.uniform(0, 60), till) for till in range(args.tills)
                                 if rng.random() < args.sales_per_hour / 60]
            for at, what in sorted(events + [(t, -1 - till) for t, till in sales_this_minute]):
                await asyncio.sleep(max(0.0, at - time.time()))
                if what >= 0:
                    push = devices.count(what, base - 60, rng.randint(0, 6), rng.randint(0, 6))
                else:
                    sale += 1
                    push = devices.sale(-1 - what, f"S{sale}", at, rng.randint(100, 9000))
                # Devices are independent: none waits for another's answer.
                task = asyncio.create_task(push)
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            minute += 1
    finally:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
