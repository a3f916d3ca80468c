"""A store gateway under a simulated store: a real `footfall agent run` process, devices, and a plain collector.

Shared by the gateway benchmarks (flash, storeday). The agent is a real process, so its
own `/proc/<pid>/io` and `/proc/<pid>/status` say what it writes to disk and how much memory
it holds. The collector here is the smallest thing that speaks enrollment and ingest (it
decodes every batch and acks it; signatures are the collector's business and measured by
other benchmarks), and it can go away and come back on the same port to make the agent's
uploader reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from footfall.protocol.answers import IngestAnswer
from footfall.protocol.envelope import decode_body
from footfall.protocol.errors import ProtocolError
from footfall.protocol.records import SensorEvent
from footfall.protocol.signing import HEADER_SERVER_TIME

REPO = Path(__file__).resolve().parents[1]


@dataclass
class PlainCollector:
    """Enrolls one agent, acks every well-formed batch, counts what it got; `down()`/`up()` close and reopen."""

    port: int = 0
    readings: int = 0
    events: int = 0
    gap_events: int = 0
    gap_seqs: int = 0
    batches: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port the first time, the same one after `down`)."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/agents/enroll", self._enroll)
        app.router.add_post("/v1/ingest", self._ingest)
        app.router.add_get("/v1/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def down(self) -> None:
        """Stop listening (connections are refused) until `up`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def up(self) -> None:
        """Listen again on the same port."""
        if self._runner is None:
            await self.start()

    def _answer(self, status: int, body: dict[str, Any]) -> web.Response:
        return web.json_response(body, status=status, headers={HEADER_SERVER_TIME: str(int(time.time()))})

    async def _health(self, _: web.Request) -> web.Response:
        return self._answer(200, {"status": "ok"})

    async def _enroll(self, _: web.Request) -> web.Response:
        return self._answer(
            201, {"agent_id": "agt_bench0001", "organization": "bench", "site": "store-1", "timezone": "Europe/Paris"}
        )

    async def _ingest(self, request: web.Request) -> web.Response:
        try:
            batch = decode_body(await request.read())
        except ProtocolError as exc:
            return self._answer(400, {"error": exc.code, "message": exc.message})
        self.batches += 1
        for record in batch.records:
            if isinstance(record, SensorEvent):
                self.events += 1
                if record.kind == "gap":
                    self.gap_events += 1
                    self.gap_seqs += record.lost_last - record.lost_first + 1
            else:
                self.readings += 1
        return self._answer(200, IngestAnswer(len(batch.records), 0, batch.seq_last).as_json())


@dataclass
class AgentProcess:
    """`footfall agent run` in its own state directory, with two kinds of device on http_push."""

    folder: Path
    collector_url: str
    commit_interval: str = "1s"
    max_size: str = "1GiB"
    counters: int = 20
    tills: int = 2
    # A tmpfs folder for status.json, as systemd's RuntimeDirectory= gives the agent; None: the state directory.
    runtime_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "agent.log"

    @property
    def state(self) -> Path:
        """The state directory."""
        return self.folder / "state"

    def configure(self) -> Path:
        """Write agent.toml and enroll with the collector."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sources = "".join(
            f'\n[[sources]]\nname = "door-{i}"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
            f'path = "/push/door-{i}"\n'
            for i in range(self.counters)
        ) + "".join(
            f'\n[[sources]]\nname = "till-{i}"\ntransport = "http_push"\nadapter = "generic-json-pos"\n'
            f'path = "/push/till-{i}"\n'
            for i in range(self.tills)
        )
        config = self.folder / "agent.toml"
        config.write_text(
            f'[agent]\nstate_dir = "state"\nlog_level = "warning"\n[collector]\nurl = "{self.collector_url}"\n'
            f'timeout = "5s"\n[buffer]\ncommit_interval = "{self.commit_interval}"\nmax_size = "{self.max_size}"\n'
            '[upload]\nbackoff_initial = "200ms"\nbackoff_max = "2s"\n[http_push]\nlisten = "127.0.0.1:0"\n'
            + sources
        )
        done = subprocess.run(
            [sys.executable, "-m", "footfall.agent", "enroll", "--collector", self.collector_url, "--token", "ffe_x",
             "--config", str(config)],
            capture_output=True, text=True, check=False, cwd=REPO, timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"enrolling the bench agent failed: {done.stderr}")
        return config

    async def start(self) -> None:
        """Start the process and wait until it serves."""
        config = await asyncio.to_thread(self.configure)  # enrolling talks to the collector on this loop
        self.proc = await asyncio.to_thread(self._spawn, config)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited: {self.log.read_text()[-2000:]}")
            status = self.status()
            if status.get("pid") == self.proc.pid and (status.get("http_push") or {}).get("port"):
                self.port = int(status["http_push"]["port"])
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the agent did not start within 60 s")

    def _spawn(self, config: Path) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            env = dict(os.environ)
            if self.runtime_dir is not None:
                env["RUNTIME_DIRECTORY"] = str(self.runtime_dir)
            return subprocess.Popen(
                [sys.executable, "-m", "footfall.agent", "run", "--config", str(config)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def status(self) -> dict[str, Any]:
        """status.json ({} while absent or half-written)."""
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads((self.state / "status.json").read_text()))
        return {}

    def io(self) -> dict[str, int]:
        """The process's /proc/<pid>/io counters (write_bytes: what it made the kernel write to storage)."""
        assert self.proc is not None
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            key, value = line.split(":")
            out[key] = int(value)
        return out

    def memory(self) -> dict[str, int]:
        """Resident and peak memory in KiB, and open file descriptors."""
        assert self.proc is not None
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                fields[line.split(":")[0]] = int(line.split()[1])
        fields["fds"] = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        return fields

    def dedupe_keys(self) -> int:
        """Dedupe keys in the buffer (kept for each profile's window, 7 days for the shipped ones)."""
        conn = sqlite3.connect(f"file:{self.state / 'buffer.sqlite'}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM seen").fetchone()[0])
        finally:
            conn.close()

    def buffer_files(self) -> tuple[int, int]:
        """The sizes of the buffer database and of its WAL on disk."""
        sizes = []
        for name in ("buffer.sqlite", "buffer.sqlite-wal"):
            try:
                sizes.append((self.state / name).stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        return sizes[0], sizes[1]


@dataclass
class Devices:
    """The store's counters and tills, POSTing to the agent as the generic JSON adapters expect."""

    agent: AgentProcess
    session: aiohttp.ClientSession
    pushed: int = 0
    refused: int = 0

    async def count(self, door: int, start_s: float, entries: int, exits: int) -> None:
        """One counter's one-minute period starting at `start_s` (Unix seconds)."""
        body = {"start": _iso(start_s), "end": _iso(start_s + 60), "in": entries, "out": exits}
        await self._post(f"/push/door-{door}", body)

    async def sale(self, till: int, txn_id: str, at_s: float, amount: int) -> None:
        """One POS sale."""
        body = {"terminal": f"till-{till}", "id": txn_id, "at": _iso(at_s), "amount": amount, "currency": "EUR"}
        await self._post(f"/push/till-{till}", body)

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(f"http://127.0.0.1:{self.agent.port}{path}", json=body) as response:
            await response.read()
            if response.status == 200:
                self.pushed += 1
            else:
                self.refused += 1


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def stopping(agent: AgentProcess) -> Iterator[AgentProcess]:
    """Make sure the agent process is stopped however the benchmark ends."""
    try:
        yield agent
    finally:
        agent.stop()
