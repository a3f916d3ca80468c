"""`footfall demo`: a collector, an enrolled agent and a simulated store on this machine.

The collector and the agent run as the same commands an operator would type (`footfall collector
serve`, `footfall agent enroll`, `footfall agent run`), as child processes with their logs under
the data directory; the store is simulated in this process (footfall/simulator.py). With
`--duration N` the demo stops the store after N seconds, waits for the agent to drain, reads the
totals back through the analysts' API and exits 0 only if they equal what the store generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import aiohttp

from footfall.simulator import SimulatedStore, StoreShape, Truth

ORG = "demo-retail"
SITE = "demo-store"
ZONE = "Europe/Paris"
DOORS = ("door-1", "door-2", "door-3", "door-4")
TILLS = ("pos-1", "pos-2")
_READY_TIMEOUT_S = 120.0
_DRAIN_TIMEOUT_S = 90.0


class DemoError(Exception):
    """Something the demo could not set up; the message says what and where its log is."""


@dataclass
class Child:
    """A child process with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def tail(self, lines: int = 15) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Footprint:
    """The agent's resident memory and CPU, sampled while the store runs."""

    rss_kib: list[int] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0

    def sample(self, pid: int) -> None:
        """Record the current RSS of `pid`."""
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    self.rss_kib.append(int(line.split()[1]))

    @staticmethod
    def cpu_seconds(pid: int) -> float:
        """User + system CPU seconds of `pid` so far."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_demo(*, duration: float, data_dir: str, port: int, rate: float) -> int:
    """Run the demo; the exit status is 0 when everything worked (and, with a duration, the totals matched)."""
    try:
        home = Path(data_dir).resolve()
        home.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(duration, home, port, rate))
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _demo(duration: float, data_dir: Path, port: int, rate: float) -> int:
    collector_url = f"http://127.0.0.1:{port}"
    children: list[Child] = []
    try:
        _say(f"starting the collector (embedded PostgreSQL under {data_dir / 'collector'}) ...")
        collector = _spawn(
            "collector", data_dir,
            ["collector", "serve", "--data-dir", str(data_dir / "collector"), "--listen", f"127.0.0.1:{port}"],
        )
        children.append(collector)
        await _wait_http(f"{collector_url}/v1/health", collector)

        token, api_key = await _bootstrap(data_dir / "collector")
        agent_dir = data_dir / "agent"
        config_path = _write_agent_config(agent_dir, collector_url)
        if not (agent_dir / "identity.json").exists():
            _say("enrolling the agent ...")
            _footfall("agent", "enroll", "--collector", collector_url, "--token", token, "--state-dir", str(agent_dir))

        _say("starting the agent ...")
        agent = _spawn("agent", data_dir, ["agent", "run", "--config", str(config_path)])
        children.append(agent)
        push_url = await _wait_agent(config_path, agent)

        api = _Api(collector_url, api_key)
        baseline = await api.totals()
        _banner(collector_url, push_url, api_key, data_dir, duration)

        footprint = Footprint()
        truth = await _run_store(push_url, rate, duration, agent, footprint)
        _say(f"store stopped: {truth.readings} readings accepted by the agent "
             f"({truth.entries} in, {truth.exits} out, {truth.sales} sales, {truth.refunds} refunds)")
        _report_footprint(footprint, truth)
        if duration <= 0:
            return 0
        return await _check(api, baseline, truth)
    finally:
        for child in reversed(children):
            child.stop()


def _say(text: str) -> None:
    print(f"footfall demo: {text}", flush=True)


def _spawn(name: str, data_dir: Path, args: list[str]) -> Child:
    log_path = data_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the Child owns and closes it
    process = subprocess.Popen(
        [sys.executable, "-m", "footfall", *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    return Child(name, process, log_path, log)


def _footfall(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "footfall", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoError(f"`footfall {' '.join(args[:2])}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


async def _wait_http(url: str, child: Child) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise DemoError(f"the {child.name} exited with status {child.process.returncode}:\n{child.tail()}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise DemoError(f"the {child.name} did not answer at {url} within {_READY_TIMEOUT_S:.0f} s; see {child.log_path}")


async def _bootstrap(collector_dir: Path) -> tuple[str, str]:
    """The demo organization and site (made once), a fresh enrollment token and analyst key."""
    import psycopg

    from footfall.collector import admin
    from footfall.collector.embedded_pg import EmbeddedPostgres

    cluster = EmbeddedPostgres(collector_dir)
    if not cluster.pgdata.is_relative_to(collector_dir):
        _say(f"the database cluster is in {cluster.pgdata}, where the postgres user can reach it "
             f"(linked from {cluster.link})")
    async with await psycopg.AsyncConnection.connect(cluster.dsn, autocommit=True) as conn:
        if ORG not in {o.id for o in await admin.list_organizations(conn)}:
            await admin.create_organization(conn, "Demo Retail", ORG)
        if SITE not in {s.id for s in await admin.list_sites(conn, ORG)}:
            await admin.create_site(conn, ORG, SITE, ZONE, "Demo store")
        token = await admin.create_enrollment_token(conn, SITE, org_id=ORG, expires=timedelta(hours=1), uses=1)
        key = await admin.create_api_key(conn, ORG, "analyst", "demo")
    return token.token, key.key


def _write_agent_config(agent_dir: Path, collector_url: str) -> Path:
    agent_dir.mkdir(parents=True, exist_ok=True)
    sources = [
        *(f'[[sources]]\nname = "{d}"\ntransport = "http_push"\nadapter = "generic-json-counter"\npath = "/push/{d}"\n'
          for d in DOORS),
        *(f'[[sources]]\nname = "{t}"\ntransport = "http_push"\nadapter = "generic-json-pos"\npath = "/push/{t}"\n'
          for t in TILLS),
    ]
    path = agent_dir / "agent.toml"
    path.write_text(
        "# Written by `footfall demo`; see agent/CONFIG.md for every key.\n"
        f'[agent]\nstate_dir = "{agent_dir}"\n\n'
        f'[collector]\nurl = "{collector_url}"\n\n'
        '[buffer]\ncommit_interval = "100ms"\n\n'
        '[upload]\nmax_age = "1s"\nbackoff_max = "5s"\n\n'
        f'[http_push]\nlisten = "127.0.0.1:{_free_port()}"\n\n' + "\n".join(sources)
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_agent(config_path: Path, agent: Child) -> str:
    """The agent's push URL once it listens and its buffer holds nothing from an earlier run."""
    from footfall.agent.config.load import load_config
    from footfall.agent.status import gather

    config = load_config(config_path)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if agent.process.poll() is not None:
            raise DemoError(f"the agent exited with status {agent.process.returncode}:\n{agent.tail()}")
        info = gather(config)
        buffer = info.get("buffer") or {}
        if info["running"] and info.get("http_push") and buffer.get("depth", 1) == 0:
            return f"http://{config.http_push.listen}"
        await asyncio.sleep(0.2)
    raise DemoError(f"the agent did not become ready within {_READY_TIMEOUT_S:.0f} s; see {agent.log_path}")


class _Api:
    """The analysts' API, as the demo's curl lines use it."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.key = key
        zone = ZoneInfo(ZONE)
        today = datetime.now(zone).date()
        # A window around today in the site's zone: the simulated readings are stamped "now".
        self.window = (today - timedelta(days=1), today + timedelta(days=2))

    def url(self, granularity: str) -> str:
        """The footfall query for the demo window."""
        start, end = self.window
        return f"{self.base}/v1/sites/{SITE}/footfall?from={start}&to={end}&granularity={granularity}"

    async def totals(self) -> tuple[int, int]:
        """Entries and exits over the window."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.get(
            self.url("day"), headers={"Authorization": f"Bearer {self.key}"}
        ) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status != 200:
                raise DemoError(f"the API answered {resp.status}: {json.dumps(body)}")
        return int(body["totals"]["entries"]), int(body["totals"]["exits"])


def _banner(collector_url: str, push_url: str, api_key: str, data_dir: Path, duration: float) -> None:
    api = _Api(collector_url, api_key)
    auth = f'-H "Authorization: Bearer {api_key}"'
    lines = [
        "",
        "  footfall demo is running",
        f"  collector API   {collector_url}   (analyst key below)",
        f"  agent push      {push_url}/push/door-1 ... /push/pos-2",
        f"  logs            {data_dir}/collector.log, {data_dir}/agent.log",
        "",
        "  try, in another terminal:",
        f"    curl {auth} \\\n      '{api.url('hour')}'",
        f"    curl {auth} \\\n      '{api.url('day')}'",
        f"    footfall agent status --config {data_dir}/agent/agent.toml",
        "",
        f"  {'running for ' + str(int(duration)) + ' s' if duration > 0 else 'Ctrl-C to stop'}",
        "",
    ]
    print("\n".join(lines), flush=True)


async def _run_store(push_url: str, rate: float, duration: float, agent: Child, footprint: Footprint) -> Truth:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shape = StoreShape(doors=tuple(f"/push/{d}" for d in DOORS), pos=tuple(f"/push/{t}" for t in TILLS))
    store = SimulatedStore(push_url, shape=shape, rate=rate)
    pid = agent.process.pid
    footprint.cpu_start, footprint.wall_start = Footprint.cpu_seconds(pid), time.monotonic()

    async def watch() -> None:
        started = time.monotonic()
        while not stop.is_set():
            footprint.sample(pid)
            if agent.process.poll() is not None:
                stop.set()
                raise DemoError(f"the agent exited during the demo:\n{agent.tail()}")
            if duration > 0 and time.monotonic() - started >= duration:
                stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    truth, _ = await asyncio.gather(store.run(stop), watch())
    footprint.cpu_end, footprint.wall_end = Footprint.cpu_seconds(pid), time.monotonic()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    return truth


def _report_footprint(footprint: Footprint, truth: Truth) -> None:
    wall = max(footprint.wall_end - footprint.wall_start, 1e-9)
    if footprint.rss_kib:
        rss = footprint.rss_kib
        _say(f"agent RSS: max {max(rss) / 1024:.1f} MiB, median {sorted(rss)[len(rss) // 2] / 1024:.1f} MiB; "
             f"CPU {100 * (footprint.cpu_end - footprint.cpu_start) / wall:.1f}% of one core")
    _say(f"pushed {truth.readings / wall:.1f} readings/s for {wall:.0f} s ({truth.rejected} refused)")


async def _check(api: _Api, baseline: tuple[int, int], truth: Truth) -> int:
    want = (truth.entries, truth.exits)
    deadline = time.monotonic() + _DRAIN_TIMEOUT_S
    got = (0, 0)
    while time.monotonic() < deadline:
        now = await api.totals()
        got = (now[0] - baseline[0], now[1] - baseline[1])
        if got == want:
            break
        await asyncio.sleep(0.5)
    _say(f"generated: entries={want[0]} exits={want[1]}")
    _say(f"API:       entries={got[0]} exits={got[1]}")
    if got != want:
        _say("MISMATCH: the API's totals differ from what the store generated")
        return 1
    _say("OK: the API's totals equal what the store generated")
    return 0
