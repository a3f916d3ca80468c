"""The real parts a throughput benchmark runs against: a private PostgreSQL cluster and collector processes.

`fresh_database(folder)` starts (or reuses) a durable embedded cluster under `folder`, drops and
recreates its `footfall` database and migrates it. `Collectors` starts `footfall collector serve`
processes on free ports and stops them with SIGTERM. `enroll_agent` writes an agent's state
directory the way a technician would, with `footfall agent enroll`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from footfall.collector import admin
from footfall.collector.embedded_pg import EmbeddedPostgres
from footfall.collector.migrate import migrate


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def fresh_database(folder: Path) -> AsyncIterator[str]:
    """A durable private cluster under `folder` with an empty, migrated `footfall` database; its DSN."""
    os.makedirs(folder, mode=0o711, exist_ok=True)
    os.chmod(folder, 0o711)
    cluster = EmbeddedPostgres(folder, timeout=600)
    await asyncio.to_thread(cluster.start)
    try:
        async with await psycopg.AsyncConnection.connect(cluster.dsn_for("postgres"), autocommit=True) as conn:
            await conn.execute("DROP DATABASE IF EXISTS footfall WITH (FORCE)")
            await conn.execute("CREATE DATABASE footfall")
        await migrate(cluster.dsn)
        yield cluster.dsn
    finally:
        await asyncio.to_thread(cluster.stop)


class Collectors:
    """`footfall collector serve` processes on free ports, logging into `folder`."""

    def __init__(self, dsn: str, count: int, folder: Path) -> None:
        self.processes: list[tuple[subprocess.Popen[bytes], int]] = []
        for number in range(count):
            port = free_port()
            with (folder / f"collector-{number}.log").open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "footfall.collector", "serve", "--database-url", dsn,
                     "--listen", f"127.0.0.1:{port}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            self.processes.append((proc, port))
        for proc, port in self.processes:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"a collector did not start on port {port}; see {folder}") from None
                    time.sleep(0.1)

    @property
    def ports(self) -> list[int]:
        """Their ports on 127.0.0.1."""
        return [port for _, port in self.processes]

    @property
    def urls(self) -> list[str]:
        """Their base URLs."""
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def stop(self) -> None:
        """SIGTERM every one and wait for it."""
        for proc, _ in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.processes:
            proc.wait(60)


async def make_token(dsn: str, *, org: str, site: str, timezone: str = "Europe/Paris") -> str:
    """An organization and site, and an enrollment token for it."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await admin.create_organization(conn, org.title(), org)
        await admin.create_site(conn, org, site, timezone)
        return (await admin.create_enrollment_token(conn, site, org_id=org)).token


def enroll_agent(config: Path, collector_url: str, token: str) -> None:
    """`footfall agent enroll --config CONFIG` against the collector."""
    done = subprocess.run(
        [sys.executable, "-m", "footfall.agent", "enroll", "--collector", collector_url, "--token", token,
         "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ},
    )
    if done.returncode != 0:
        raise RuntimeError(f"enrollment failed: {done.stdout}{done.stderr}")


def agent_config(folder: Path, collector_url: str, *, counters: int, tills: int, listen: str, extra: str = "") -> Path:
    """An agent.toml with `counters` generic JSON people counters and `tills` generic JSON POS on http_push."""
    sources = "".join(
        f'\n[[sources]]\nname = "door-{i}"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
        f'path = "/push/door-{i}"\n'
        for i in range(counters)
    ) + "".join(
        f'\n[[sources]]\nname = "pos-{i}"\ntransport = "http_push"\nadapter = "generic-json-pos"\n'
        f'path = "/push/pos-{i}"\n'
        for i in range(tills)
    )
    path = folder / "agent.toml"
    path.write_text(
        f'[agent]\nstate_dir = "state"\n\n[collector]\nurl = "{collector_url}"\n\n'
        f'[http_push]\nlisten = "{listen}"\n{extra}{sources}'
    )
    return path
