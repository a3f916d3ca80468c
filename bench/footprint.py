"""The agent's footprint at store load: resident memory and CPU share of a real agent process.

Setup: a private durable cluster and one collector (bench/stack.py); an agent enrolled with
`footfall agent enroll` and started the way a gateway runs it, `footfall agent run --config ...`
(the console script, so the root command is imported too); a simulated store
(footfall/simulator.py) of 20 people counters and 2 POS posting to it over HTTP, each device
every --footprint-interval seconds. After a short settling time, the agent's RSS is sampled
every half second and its CPU time read at the start and end of --footprint-seconds.
Reference: a bare Python interpreter's RSS on the same machine (the floor any Python agent pays).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from footfall.simulator import SimulatedStore, StoreShape

from .common import machine
from .figures import Figure, FigureReport, sample
from .stack import Collectors, agent_config, enroll_agent, free_port, fresh_database, make_token

NAME = "footprint"
ABOUT = "agent RSS and CPU for a 20-sensor, 2-POS store"
COUNTERS, TILLS = 20, 2
SETTLE_S = 5.0


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The footprint benchmark's options."""
    group.add_argument("--footprint-seconds", type=float, default=60.0, help="how long to measure (60)")
    group.add_argument("--footprint-interval", type=float, default=15.0,
                       help="seconds between two posts of one device (15; real counters post every 1-15 min)")
    group.add_argument("--footprint-dir", type=Path, default=Path("/var/tmp/footfall-bench-footprint"),
                       help="the private cluster's and the agent's home (/var/tmp/footfall-bench-footprint)")


def _footfall_command() -> list[str]:
    """The installed `footfall` console script next to this interpreter (the root command, as deployed)."""
    script = Path(sys.executable).with_name("footfall")
    return [str(script)] if script.exists() else [sys.executable, "-m", "footfall"]


def _bare_rss_kib() -> int:
    """RSS of an idle bare interpreter."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush();"
                             " time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return sample(proc.pid).rss_kib
    finally:
        proc.kill()
        proc.wait()


def _start_agent(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*_footfall_command(), "agent", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


async def run(args: argparse.Namespace) -> FigureReport:
    """Run the store against the agent and watch the agent."""
    report = FigureReport(NAME, machine=machine())
    home = args.footprint_dir
    async with fresh_database(home / "cluster") as dsn:
        collectors = Collectors(dsn, 1, home)
        agent_home = home / "agent"
        shutil.rmtree(agent_home, ignore_errors=True)
        agent_home.mkdir(parents=True)
        try:
            url = collectors.urls[0]
            token = await make_token(dsn, org="bench-footprint", site="store-1")
            port = free_port()
            config = agent_config(agent_home, url, counters=COUNTERS, tills=TILLS, listen=f"127.0.0.1:{port}")
            await asyncio.to_thread(enroll_agent, config, url, token)
            agent = _start_agent(config, home / "agent.log")
            try:
                figures = await _watch(agent, port, args)
            finally:
                agent.terminate()
                agent.wait(60)
        finally:
            collectors.stop()
    rss_max, rss_avg, cpu_share, readings = figures
    bare = _bare_rss_kib() / 1024
    report.setup.update(
        store=f"{COUNTERS} counters and {TILLS} POS, each posting every {args.footprint_interval:g} s",
        command=" ".join([Path(_footfall_command()[0]).name, "agent", "run"]),
        measured=f"{args.footprint_seconds:g} s after {SETTLE_S:g} s of settling; {readings} readings taken",
    )
    report.add(Figure("agent RSS, max", rss_max, "MiB", bare, "bare python", max_value=60 * 1e6 / 2**20,
                      note=f"average {rss_avg:.1f} MiB; target 60 MB = {60 * 1e6 / 2**20:.1f} MiB"))
    report.add(Figure("agent CPU", cpu_share * 100, "% of one core", max_value=2.0))
    return report


async def _watch(
    agent: subprocess.Popen[bytes], port: int, args: argparse.Namespace
) -> tuple[float, float, float, int]:
    """Drive the store; (max RSS MiB, average RSS MiB, CPU share, readings accepted)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the agent did not start serving") from None
            await asyncio.sleep(0.1)
    shape = StoreShape(doors=tuple(f"/push/door-{i}" for i in range(COUNTERS)),
                       pos=tuple(f"/push/pos-{i}" for i in range(TILLS)))
    store = SimulatedStore(f"http://127.0.0.1:{port}", shape=shape, rate=(COUNTERS + TILLS) / args.footprint_interval)
    stop = asyncio.Event()
    running = asyncio.create_task(store.run(stop))
    await asyncio.sleep(SETTLE_S)
    first = sample(agent.pid)
    started = time.monotonic()
    rss = [first.rss_kib]
    while time.monotonic() - started < args.footprint_seconds:
        await asyncio.sleep(0.5)
        rss.append(sample(agent.pid).rss_kib)
    last = sample(agent.pid)
    elapsed = time.monotonic() - started
    stop.set()
    truth = await running
    return max(rss) / 1024, sum(rss) / len(rss) / 1024, (last.cpu_s - first.cpu_s) / elapsed, truth.readings
