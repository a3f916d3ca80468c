"""Collector ingest end to end against the raw ceiling of the same regime, at 10, 100 and 1,000 records per upload.

Setup: a private durable PostgreSQL cluster (fsync on, as in production) under --ingest-dir,
migrated afresh; one organization and site; --agents agents with their own keys. Each upload
is a real signed batch of count records (one a minute per agent, so a 1,000-record upload
touches about 70 fifteen-minute buckets and two local days).

- ingest: --collectors `footfall collector serve` processes (default settings: a pool of 10
  database connections each), the agents spread over them, each agent one keep-alive
  connection and one upload in flight at a time, as the protocol requires. The client sends
  requests it built and signed beforehand over raw HTTP/1.1, so it measures the collector, not
  itself. Figures: uploads/s and rows/s, everything committed (raw rows, rollups, marks).
- ceiling: the same uploads, decoded beforehand, by as many processes with as many database
  connections as the collectors had: per upload one transaction doing only the dedupe step
  (the agent's row FOR UPDATE, drop seqs at or below its mark, raise the mark) and a binary
  COPY of the same rows into the same table.
Between runs the data tables are emptied and the marks reset.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.collector import admin
from footfall.protocol.envelope import CONTENT_TYPE, encode_body, make_batch
from footfall.protocol.records import Count
from footfall.protocol.signing import generate_key, public_bytes, sign_request
from psycopg import sql

from .common import machine
from .figures import Figure, FigureReport
from .stack import Collectors, fresh_database

NAME = "ingest"
ABOUT = "collector ingest end to end vs the raw ceiling"
T0 = datetime(2026, 3, 2, tzinfo=UTC)
ORG, SITE = "bench-ingest", "store-1"
POOL_SIZE = 10
DATA_TABLES = ("people_counts", "occupancy", "transactions", "sensor_events", "counts_15m", "counts_day",
               "sales_15m", "sales_day", "sensors")
_CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")
# Uploads per run, by records per upload: enough for tens of seconds at the expected rates.
DEFAULT_UPLOADS = {10: 40_000, 100: 12_000, 1000: 1_500}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The ingest benchmark's options."""
    group.add_argument("--agents", type=int, default=64, help="concurrent agents, one connection each (64)")
    group.add_argument("--collectors", type=int, default=2, help="collector processes (2)")
    group.add_argument("--sizes", default="10,100,1000", help="records per upload, comma-separated (10,100,1000)")
    group.add_argument("--uploads-scale", type=float, default=1.0, help="scale the number of uploads per run (1.0)")
    group.add_argument("--ingest-dir", type=Path, default=Path("/var/tmp/footfall-bench-ingest"),
                       help="the private cluster's home (/var/tmp/footfall-bench-ingest)")


@dataclass
class Agent:
    """A benchmark agent: its id and key."""

    id: str
    key: Ed25519PrivateKey


def _records(agent_index: int, first_seq: int, count: int) -> list[Count]:
    out = []
    for seq in range(first_seq, first_seq + count):
        start = int((T0 + timedelta(minutes=seq)).timestamp() * 1000)
        out.append(Count(f"door-{agent_index % 4}", "main", start, start + 60_000, seq % 7, seq % 5, seq=seq))
    return out


def request_bytes(agent: Agent, records: list[Count], host: str, port: int) -> bytes:
    body = encode_body(make_batch(agent.id, records, int(time.time() * 1000)))
    signed = sign_request(agent.key, "POST", "/v1/ingest", agent.id, int(time.time()), body).as_dict()
    head = (
        f"POST /v1/ingest HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def send_all(host: str, port: int, requests: list[bytes], busy: list[int]) -> int:
    """One agent: its requests in order over one keep-alive connection; how many were answered 200.

    A 503 (the collector's pool busy) is retried after a short pause, as an agent would; `busy` counts them.
    """
    reader, writer = await asyncio.open_connection(host, port)
    ok = 0
    try:
        for request in requests:
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _CONTENT_LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if head[9:12] != b"503":
                    break
                busy[0] += 1
                await asyncio.sleep(0.1)
            if head[9:12] != b"200":
                raise RuntimeError(f"upload answered {head[:200]!r}")
            ok += 1
    finally:
        writer.close()
    return ok


async def _reset(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, DATA_TABLES))))
        await conn.execute("UPDATE agents SET hw_seq = 0, clock_skew_s = NULL")
        await conn.execute("VACUUM ANALYZE agents")


async def _setup(dsn: str, count: int) -> list[Agent]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await admin.create_organization(conn, "Bench Ingest", ORG)
        await admin.create_site(conn, ORG, SITE, "Europe/Paris")
        agents = [Agent(f"agt_bench{i:08d}", generate_key()) for i in range(count)]
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO agents (id, org_id, site_id, public_key) VALUES (%s, %s, %s, %s)",
                [(a.id, ORG, SITE, public_bytes(a.key)) for a in agents],
            )
    return agents


async def _ingest_run(
    agents: list[Agent], ports: list[int], size: int, uploads: int
) -> tuple[float, int, int]:
    """Uploads/s through the collectors, the uploads done, and the 503s met on the way."""
    per_agent = max(1, uploads // len(agents))
    plans = []
    for index, agent in enumerate(agents):
        port = ports[index % len(ports)]
        requests = [
            request_bytes(agent, _records(index, 1 + j * size, size), "127.0.0.1", port) for j in range(per_agent)
        ]
        plans.append((port, requests))
    busy = [0]
    started = time.perf_counter()
    done = await asyncio.gather(*(send_all("127.0.0.1", port, requests, busy) for port, requests in plans))
    elapsed = time.perf_counter() - started
    return sum(done) / elapsed, sum(done), busy[0]


def _ceiling_worker(dsn: str, shard: list[tuple[str, int]], size: int, per_agent: int, connections: int,
                    ready: Any, go: Any, out: Any) -> None:
    """One process of the ceiling: `connections` connections over its agents' uploads."""

    async def main() -> None:
        rows = {agent: [_copy_rows(agent, r) for r in _upload_records(index, size, per_agent)]
                for agent, index in shard}
        conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(connections)]
        ready.set()
        go.wait()
        per_conn = [shard[i::connections] for i in range(connections)]
        started = time.perf_counter()
        await asyncio.gather(*(_ceiling_conn(conn, group, rows) for conn, group in zip(conns, per_conn, strict=True)))
        out.put(time.perf_counter() - started)
        for conn in conns:
            await conn.close()

    asyncio.run(main())


def _upload_records(index: int, size: int, per_agent: int) -> list[list[Count]]:
    return [_records(index, 1 + j * size, size) for j in range(per_agent)]


def _copy_rows(agent: str, records: list[Count]) -> tuple[int, list[tuple[Any, ...]]]:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return records[-1].seq, [
        (ORG, SITE, agent, r.seq, r.sensor, r.line, epoch + timedelta(milliseconds=r.start_ms),
         epoch + timedelta(milliseconds=r.end_ms), r.entries, r.exits, r.clock)
        for r in records
    ]


_COPY = ("COPY people_counts (org_id, site_id, agent_id, seq, sensor, line, period_start, period_end, entries, "
         "exits, clock) FROM STDIN (FORMAT BINARY)")
_TYPES = ["text", "text", "text", "int8", "text", "text", "timestamptz", "timestamptz", "int8", "int8", "text"]


async def _ceiling_conn(conn: psycopg.AsyncConnection[Any], agents: list[tuple[str, int]],
                        rows: dict[str, list[tuple[int, list[tuple[Any, ...]]]]]) -> None:
    for agent, _ in agents:
        for last, upload in rows[agent]:
            async with conn.transaction():
                cur = await conn.execute("SELECT hw_seq FROM agents WHERE id = %s FOR UPDATE", (agent,))
                row = await cur.fetchone()
                mark = row[0] if row else 0
                fresh = [r for r in upload if r[3] > mark]
                async with conn.cursor() as copy_cur, copy_cur.copy(_COPY) as copy:
                    copy.set_types(_TYPES)
                    for r in fresh:
                        await copy.write_row(r)
                await conn.execute("UPDATE agents SET hw_seq = %s WHERE id = %s", (max(mark, last), agent))


def _ceiling_run(dsn: str, agents: list[Agent], size: int, uploads: int, processes: int) -> tuple[float, int]:
    """Uploads/s of the raw ceiling, and the uploads done."""
    per_agent = max(1, uploads // len(agents))
    spawn = multiprocessing.get_context("spawn")
    ready_events, out = [], spawn.Queue()
    go = spawn.Event()
    workers = []
    indexed = [(a.id, i) for i, a in enumerate(agents)]
    for number in range(processes):
        ready = spawn.Event()
        ready_events.append(ready)
        worker = spawn.Process(
            target=_ceiling_worker,
            args=(dsn, indexed[number::processes], size, per_agent, POOL_SIZE, ready, go, out),
        )
        worker.start()
        workers.append(worker)
    for ready in ready_events:
        ready.wait(600)
    go.set()
    elapsed = max(out.get(timeout=3600) for _ in workers)
    for worker in workers:
        worker.join()
    done = per_agent * len(agents)
    return done / elapsed, done


async def run(args: argparse.Namespace) -> FigureReport:
    """Start the cluster and collectors, then measure each upload size both ways."""
    report = FigureReport(NAME, machine=machine())
    async with fresh_database(args.ingest_dir) as dsn:
        agents = await _setup(dsn, args.agents)
        collectors = Collectors(dsn, args.collectors, args.ingest_dir)
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
            report.setup.update(
                postgresql="embedded, durable (fsync on, synchronous_commit on)", agents=args.agents,
                collectors=f"{args.collectors} processes, {POOL_SIZE} database connections each",
                ceiling=f"{args.collectors} processes x {POOL_SIZE} connections: FOR UPDATE mark, COPY, mark update",
            )
            # Warm up: every collector connects its pool and makes the month's partitions before anything is timed.
            await _ingest_run(agents, collectors.ports, 1000, len(agents))
            for size in sizes:
                uploads = int(DEFAULT_UPLOADS.get(size, 2000) * args.uploads_scale)
                await _reset(dsn)
                rate, done, busy = await _ingest_run(agents, collectors.ports, size, uploads)
                await _verify(dsn, done * size)
                await _reset(dsn)
                ceiling, _ = await asyncio.to_thread(_ceiling_run, dsn, agents, size, uploads, args.collectors)
                report.add(Figure(
                    f"ingest, {size} records/upload", rate, "uploads/s", ceiling, "raw ceiling", min_share=0.5,
                    min_value=2000 if size == min(sizes) else None,
                    note=f"{done} uploads, {busy} answered 503 and retried",
                ))
                report.add(Figure(
                    f"  rows, {size} records/upload", rate * size, "rows/s", ceiling * size, "raw ceiling"
                ))
        finally:
            collectors.stop()
    return report


async def _verify(dsn: str, rows: int) -> None:
    """Everything the collectors acknowledged is stored, once."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM people_counts")
        row = await cur.fetchone()
    if row is None or row[0] != rows:
        raise RuntimeError(f"expected {rows} stored rows, found {row}")

