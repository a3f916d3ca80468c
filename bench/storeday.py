"""A 24-hour store day compressed into minutes: the agent's memory and buffer stay flat, outages included.

A real `footfall agent run` takes a whole day of a store's readings (`--counters` counters
with a one-minute period each minute, `--tills` tills), the day's clock running `--day-minutes`
(default 4) real minutes. The collector goes away three times: for half an hour in the
morning, for three hours at midday (longer than the buffer's bound holds, `--buffer-max`,
default 256 KiB: the oldest readings are dropped with gap events) and, in the evening, for
one minute in every two during an hour (thirty reconnect loops). Sampled every half second:
the agent's resident memory and open file descriptors (/proc/<pid>/status, /proc/<pid>/fd) and
the buffer's files on disk. Flat means: the memory at the end of the day no higher than after
its first quarter (plus a little), the descriptors back where they started, and the buffer's
database never beyond its bound plus SQLite's own slack (free pages, a WAL of up to 1000
pages before its checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from footfall.units import parse_size

from .common import machine
from .figures import Figure, FigureReport
from .gateway import AgentProcess, Devices, PlainCollector, stopping

NAME = "storeday"
ABOUT = "a 24-hour store day compressed: memory and buffer stay flat through outages and reconnects"
DAY_START = 1_795_478_400  # 2026-11-24T00:00:00Z: the simulated day
# (virtual hour it starts, virtual hours it lasts)
# Devices whose push is still waiting for its commit, at most (a real store's are independent).
MAX_IN_FLIGHT = 400
OUTAGES = [(6.0, 0.5), (12.0, 3.0), *((18.0 + i / 30, 1 / 60) for i in range(30))]


@dataclass
class Sample:
    """One look at the agent."""

    day_fraction: float
    rss_kib: int
    fds: int
    database_bytes: int
    wal_bytes: int


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The storeday benchmark's options."""
    group.add_argument("--day-minutes", type=float, default=4.0, help="real minutes the day takes (4)")
    group.add_argument("--buffer-max", default="256KiB", help="the agent's [buffer] max_size (256KiB)")
    group.add_argument("--day-counters", type=int, default=20, help="people counters (20)")
    group.add_argument("--day-tills", type=int, default=2, help="POS terminals (2), 30 sales an hour each")


async def run(args: argparse.Namespace) -> FigureReport:
    """Play the day, then let the agent drain and report."""
    report = FigureReport(NAME, machine=machine())
    report.setup = {
        "day": f"24 h in {args.day_minutes:g} real minutes ({86400 / (args.day_minutes * 60):.0f}x)",
        "store": f"{args.day_counters} counters, {args.day_tills} tills",
        "buffer bound": args.buffer_max,
        "outages": "06:00 for 30 min, 12:00 for 3 h, 18:00-19:00 down one minute in two",
    }
    collector = PlainCollector()
    await collector.start()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="footfall-bench-day-", dir="/var/tmp") as folder:
        agent = AgentProcess(Path(folder), collector.url, max_size=args.buffer_max, counters=args.day_counters,
                             tills=args.day_tills)
        await agent.start()
        with stopping(agent):
            async with aiohttp.ClientSession() as session:
                devices = Devices(agent, session)
                progress = [0.0]
                sampler = asyncio.create_task(_sample(agent, progress, samples))
                try:
                    await _day(devices, collector, args, progress)
                    await collector.up()
                    for _ in range(600):  # up to two minutes for the backlog to drain
                        if not agent.status().get("buffer", {}).get("depth", 1):
                            break
                        await asyncio.sleep(0.2)
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                status = agent.status()
                peak = agent.memory()["VmHWM"]
                keys = agent.dedupe_keys()
        await collector.down()
    _figures(report, samples, status, devices, collector, peak, parse_size(args.buffer_max), keys)
    return report


async def _day(devices: Devices, collector: PlainCollector, args: argparse.Namespace, progress: list[float]) -> None:
    """Each simulated minute, every device pushes; devices do not wait for one another (nor for a commit)."""
    rng = random.Random(11)
    real_per_minute = args.day_minutes * 60 / 1440
    start = time.monotonic()
    sale = 0
    in_flight: set[asyncio.Task[None]] = set()
    room = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def device(push: Coroutine[Any, Any, None]) -> None:
        async with room:
            await push

    def launch(push: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(device(push))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    for minute in range(1440):
        await asyncio.sleep(max(0.0, start + minute * real_per_minute - time.monotonic()))
        hour = minute / 60
        down = any(begin <= hour < begin + length for begin, length in OUTAGES)
        await (collector.down() if down else collector.up())
        at = DAY_START + minute * 60
        for door in range(args.day_counters):
            launch(devices.count(door, at - 60, rng.randint(0, 6), rng.randint(0, 6)))
        for till in range(args.day_tills):
            if rng.random() < 0.5:
                sale += 1
                launch(devices.sale(till, f"S{sale}", at + rng.uniform(0, 59), rng.randint(100, 9000)))
        progress[0] = (minute + 1) / 1440
    await asyncio.gather(*in_flight)


async def _sample(agent: AgentProcess, progress: list[float], samples: list[Sample]) -> None:
    while True:
        memory = agent.memory()
        database, wal = agent.buffer_files()
        samples.append(Sample(progress[0], memory["VmRSS"], memory["fds"], database, wal))
        await asyncio.sleep(0.5)


def _at(samples: list[Sample], fraction: float) -> Sample:
    return next((s for s in samples if s.day_fraction >= fraction), samples[-1])


def _figures(
    report: FigureReport, samples: list[Sample], status: dict[str, object], devices: Devices,
    collector: PlainCollector, peak_kib: int, bound: int, keys: int,
) -> None:
    buffer = status.get("buffer", {})
    assert isinstance(buffer, dict)
    for fraction in (0.05, 0.25, 0.5, 0.75, 1.0):
        sample = _at(samples, fraction)
        report.add(Figure(
            f"RSS at {fraction:.0%} of the day", sample.rss_kib / 1024, "MiB",
            note=f"{sample.fds} open fds",
        ))
    quarter, end = _at(samples, 0.25), _at(samples, 1.0)
    report.add(Figure(
        "RSS growth, first quarter to end of day", (end.rss_kib - quarter.rss_kib) / 1024, "MiB",
        note="flat: about zero",
    ))
    report.add(Figure("peak RSS (VmHWM)", peak_kib / 1024, "MiB"))
    first = _at(samples, 0.05)
    report.add(Figure("open fds, 5% of the day -> end", end.fds - first.fds, "fds", note=f"{first.fds} -> {end.fds}"))
    for label, part in (("database", "database_bytes"), ("WAL", "wal_bytes")):
        sizes = [getattr(s, part) for s in samples]
        report.add(Figure(
            f"buffer {label} file, largest", max(sizes) / 1024, "KiB",
            note=f"at 25%: {getattr(quarter, part) // 1024} KiB, at the end: {getattr(end, part) // 1024} KiB",
        ))
    report.add(Figure(
        "buffer bound", bound / 1024, "KiB",
        note="on the records' bytes; the file adds free pages and dedupe keys",
    ))
    report.add(Figure(
        "dedupe keys at the end of the day", keys, "",
        note="one per period and sale, kept 7 days, at most 500,000",
    ))
    report.add(Figure("readings pushed by the store", devices.pushed, "", note=f"{devices.refused} refused"))
    report.add(Figure("readings uploaded", collector.readings, "", note=f"{collector.batches} batches"))
    report.add(Figure("readings lost at the bound", devices.pushed - collector.readings, "", note="pushed - uploaded"))
    report.add(Figure(
        "seqs named lost by gap events", collector.gap_seqs, "",
        note=f"{collector.gap_events} gap events; never fewer than the readings lost",
    ))
    report.add(Figure(
        "records dropped at the bound (agent)", int(buffer.get("dropped_records", 0)), "",
        note="includes records whose batch was in flight and still arrived",
    ))
