"""Backlog drain: a week of buffered readings from a 20-sensor store, uploaded by one real agent process.

Setup: a private durable cluster and one collector process (bench/stack.py); an agent enrolled
with `footfall agent enroll`, whose buffer is filled beforehand with a week of one-minute counts
from 20 sensors (20 x 7 x 1,440 = 201,600 records) through the buffer's own write path, as if the
uplink had been down for a week. Then `footfall agent run` starts with its default upload
settings, and the clock runs until its buffer is empty; every record is checked to be stored once.
Reference: the same records in uploads of the agent's batch size (1,000) sent in order by the raw
HTTP client of the ingest benchmark (bench/ingest.py) to the same collector: the collector's side alone.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from footfall.agent.buffer import Buffer
from footfall.agent.identity import load_identity, load_key
from footfall.protocol.records import Count

from .common import machine
from .figures import Figure, FigureReport
from .ingest import Agent, request_bytes, send_all
from .stack import Collectors, agent_config, enroll_agent, fresh_database, make_token

NAME = "backlog"
ABOUT = "a week of a 20-sensor store's readings drained by one agent"
SENSORS = 20
MINUTES = 7 * 24 * 60


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The backlog benchmark's options."""
    group.add_argument("--backlog-days", type=float, default=7.0, help="days of buffered readings (7)")
    group.add_argument("--backlog-dir", type=Path, default=Path("/var/tmp/footfall-bench-backlog"),
                       help="the private cluster's and the agent's home (/var/tmp/footfall-bench-backlog)")


def _week(days: float) -> list[Count]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=days)
    start_ms = int(start.timestamp() * 1000)
    return [
        Count(f"door-{sensor}", "main", start_ms + minute * 60_000, start_ms + (minute + 1) * 60_000,
              (minute + sensor) % 6, (minute * 7 + sensor) % 5)
        for minute in range(int(days * 24 * 60))
        for sensor in range(SENSORS)
    ]


async def _fill(path: Path, records: list[Count]) -> None:
    async with Buffer(path, max_size=1 << 34, commit_interval=0.0) as buffer:
        for first in range(0, len(records), 5000):
            await buffer.append(records[first:first + 5000])


def _start_agent(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "footfall.agent", "run", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


def _depth(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        conn.close()


async def run(args: argparse.Namespace) -> FigureReport:
    """Fill, start the agent, time the drain."""
    report = FigureReport(NAME, machine=machine())
    home = args.backlog_dir
    async with fresh_database(home / "cluster") as dsn:
        collectors = Collectors(dsn, 1, home)
        agent_home = home / "agent"
        shutil.rmtree(agent_home, ignore_errors=True)
        agent_home.mkdir(parents=True)
        try:
            url = collectors.urls[0]
            token = await make_token(dsn, org="bench-backlog", site="store-1")
            config = agent_config(agent_home, url, counters=SENSORS, tills=0, listen="127.0.0.1:0")
            await asyncio.to_thread(enroll_agent, config, url, token)
            records = _week(args.backlog_days)
            buffer_path = agent_home / "state" / "buffer.sqlite"
            filled = time.perf_counter()
            await _fill(buffer_path, records)
            fill_s = time.perf_counter() - filled
            started = time.perf_counter()
            agent = _start_agent(config, home / "agent.log")
            try:
                while _depth(buffer_path):
                    if agent.poll() is not None:
                        raise RuntimeError(f"the agent exited with {agent.returncode}; see {home / 'agent.log'}")
                    await asyncio.sleep(0.1)
                drain_s = time.perf_counter() - started
            finally:
                agent.terminate()
                agent.wait(60)
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                cur = await conn.execute("SELECT count(*), count(DISTINCT seq) FROM people_counts")
                stored = await cur.fetchone()
            if stored != (len(records), len(records)):
                raise RuntimeError(f"{len(records)} records buffered, the collector has {stored}")
            bare_s = await _bare_client(dsn, agent_home / "state", records, collectors.ports[0])
        finally:
            collectors.stop()
    report.setup.update(
        records=len(records), sensors=SENSORS, days=args.backlog_days,
        buffer_fill=f"{fill_s:.1f} s through Buffer.append, 5,000 records a commit",
        agent="footfall agent run, default [upload] settings (1,000 records or 1 MiB a batch)",
        collector="one `footfall collector serve`, durable embedded PostgreSQL",
    )
    report.add(Figure(
        "a week's backlog drained", drain_s, "s", bare_s, "bare client, same uploads", max_value=60.0,
        note=f"{len(records):,} records, {len(records) / drain_s:,.0f} records/s, agent start included",
    ))
    return report


async def _bare_client(dsn: str, state_dir: Path, records: list[Count], port: int) -> float:
    """Seconds for the raw HTTP client of the ingest benchmark to send the same records, 1,000 an upload, in order."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("TRUNCATE people_counts, counts_15m, counts_day, sensors, sensor_events")
        await conn.execute("UPDATE agents SET hw_seq = 0")
    identity, key = load_identity(state_dir), load_key(state_dir)
    agent = Agent(identity.agent_id, key)
    numbered = [replace(r, seq=i + 1) for i, r in enumerate(records)]
    requests = [
        request_bytes(agent, numbered[i:i + 1000], "127.0.0.1", port) for i in range(0, len(numbered), 1000)
    ]
    started = time.perf_counter()
    await send_all("127.0.0.1", port, requests, [0])
    return time.perf_counter() - started
