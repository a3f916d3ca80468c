"""The agent's write path against raw SQLite at the same durability and commit size.

Measured, each on a fresh file in the same folder:
- intake: device frames (generic-json-counter, one reading each) decoded and taken through
  `SourceIntake` — dedupe key, records and state in one group commit of the buffer — by many
  concurrent writers, as http_push hands them over; readings/s, and the average commit size;
- buffer: the same number of records through `Buffer.append` alone (no decoding, no dedupe);
- the ceiling: Python's sqlite3 inserting the same packed records into the same table, WAL
  with synchronous=FULL (the buffer's own settings), in transactions of the intake's average
  commit size (and of the buffer run's, for that figure), with no thread, queue or event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from footfall.agent.buffer import Buffer
from footfall.agent.config.sections import SourceConfig
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame
from footfall.protocol.envelope import pack_record
from footfall.protocol.records import Count

from .common import machine
from .figures import Figure, FigureReport

NAME = "buffer"
ABOUT = "agent buffer write path vs raw SQLite"
DAY = datetime(2026, 3, 8, tzinfo=UTC)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The buffer benchmark's options."""
    group.add_argument("--buffer-readings", type=int, default=30_000, help="readings per run (30000)")
    group.add_argument("--buffer-writers", type=int, default=64, help="concurrent writers (64)")
    group.add_argument("--buffer-dir", type=Path, default=None, help="where the files go (a temp folder on /var/tmp)")


def _frames(count: int, sensors: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        start = DAY + timedelta(minutes=i // sensors)
        body = {"line": "main", "start": start.isoformat().replace("+00:00", "Z"),
                "end": (start + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"), "in": i % 7, "out": i % 5}
        out.append((f"door-{i % sensors}", json.dumps(body).encode()))
    return out


async def _intake_run(path: Path, frames: list[tuple[str, bytes]], writers: int) -> tuple[float, int]:
    """Readings/s through the intake, and the buffer's commit count."""
    profile = load_profiles()["generic-json-counter"]
    extractor = default_extractors()[profile.format]
    async with Buffer(path, max_size=1 << 34, commit_interval=0.0) as buffer:
        intakes = {
            name: SourceIntake(
                SourceConfig(name=name, transport="http_push", adapter=profile.name, options=HttpPushOptions(path="/")),
                profile, extractor, buffer,
            )
            for name in sorted({n for n, _ in frames})
        }
        queue = list(reversed(frames))

        async def writer() -> None:
            while queue:
                name, payload = queue.pop()
                await intakes[name](Frame(name, payload, received_ms=0))

        commits = buffer.commits
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - started
        return len(frames) / elapsed, buffer.commits - commits


async def _buffer_run(path: Path, records: list[Count], writers: int) -> tuple[float, int]:
    """Records/s through Buffer.append (one record per call, `writers` at a time), and the commit count."""
    async with Buffer(path, max_size=1 << 34, commit_interval=0.0) as buffer:
        queue = list(reversed(records))

        async def writer() -> None:
            while queue:
                await buffer.append([queue.pop()])

        commits = buffer.commits
        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        return len(records) / (time.perf_counter() - started), buffer.commits - commits


def _raw_run(path: Path, bodies: list[bytes], per_commit: int) -> float:
    """Rows/s of plain sqlite3 inserts, WAL + synchronous=FULL, `per_commit` rows a transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, taken_ms INTEGER NOT NULL, kind TEXT NOT NULL, "
                 "body BLOB NOT NULL)")
    started = time.perf_counter()
    for first in range(0, len(bodies), per_commit):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO records (seq, taken_ms, kind, body) VALUES (?, ?, 'count', ?)",
            ((first + i + 1, 0, body) for i, body in enumerate(bodies[first:first + per_commit])),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(bodies) / elapsed


async def run(args: argparse.Namespace) -> FigureReport:
    """Measure the three write paths on fresh files."""
    report = FigureReport(NAME, machine=machine())
    folder = Path(tempfile.mkdtemp(prefix="ff-bench-buffer-", dir=args.buffer_dir or "/var/tmp"))
    try:
        frames = _frames(args.buffer_readings, sensors=20)
        records = [
            Count(f"door-{i % 20}", "main", i * 60_000, (i + 1) * 60_000, i % 7, i % 5, seq=i + 1)
            for i in range(args.buffer_readings)
        ]
        intake_rate, intake_commits = await _intake_run(folder / "intake.sqlite", frames, args.buffer_writers)
        buffer_rate, buffer_commits = await _buffer_run(folder / "buffer.sqlite", records, args.buffer_writers)
        bodies = [pack_record(r) for r in records]
        intake_size = max(1, round(len(frames) / max(1, intake_commits)))
        buffer_size = max(1, round(len(records) / max(1, buffer_commits)))
        raw_intake = await asyncio.to_thread(_raw_run, folder / "raw-intake.sqlite", bodies, intake_size)
        raw_buffer = await asyncio.to_thread(_raw_run, folder / "raw-buffer.sqlite", bodies, buffer_size)
        report.setup.update(
            readings=args.buffer_readings, writers=args.buffer_writers, folder=str(folder),
            durability="WAL, synchronous=FULL (fsync per commit) for all three",
            intake_commit_size=intake_size, buffer_commit_size=buffer_size,
        )
        report.add(Figure(
            "intake: frames decoded and committed", intake_rate, "readings/s", raw_intake,
            f"raw sqlite3, {intake_size} rows/commit", min_share=0.5,
            note=f"{intake_commits} commits; each reading also writes its dedupe key",
        ))
        report.add(Figure(
            "buffer: Buffer.append", buffer_rate, "records/s", raw_buffer,
            f"raw sqlite3, {buffer_size} rows/commit", min_share=0.5, note=f"{buffer_commits} commits",
        ))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return report
