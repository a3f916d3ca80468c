"""The whole pipeline on real parts: device -> agent process -> collector process -> PostgreSQL -> API.

Every test ends by comparing the API's totals with what the simulated devices were told was
accepted: exactly equal, nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tests.fixtures.agent import AgentProcess
from tests.fixtures.collector import CollectorProcess, free_port


def bootstrap(dsn: str, timezone: str = "Europe/Paris") -> tuple[str, str, str]:
    """An organization and site; returns (site, enrollment token, analyst key)."""
    from footfall.collector import admin

    async def make() -> tuple[str, str, str]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            org = (await admin.create_organization(conn, "E2E Retail")).id
            site = (await admin.create_site(conn, org, "store-1", timezone)).id
            token = await admin.create_enrollment_token(conn, site, org_id=org)
            key = await admin.create_api_key(conn, org, "analyst")
        return site, token.token, key.key

    return asyncio.run(make())


def period(minute: int) -> dict[str, Any]:
    """A one-minute count on 2026-03-08 from 10:00Z, with in/out varying by minute."""
    hour, minute = divmod(minute, 60)
    return {
        "line": "main",
        "start": f"2026-03-08T{10 + hour:02d}:{minute:02d}:00Z",
        "end": f"2026-03-08T{10 + hour + (minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00Z",
        "in": minute % 5,
        "out": minute % 3,
    }


def totals(collector: CollectorProcess, site: str, key: str) -> tuple[int, int]:
    """Entries and exits the API reports for the days around the test data."""
    request = urllib.request.Request(
        f"{collector.url}/v1/sites/{site}/footfall?from=2026-03-07&to=2026-03-10&granularity=day",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    return int(body["totals"]["entries"]), int(body["totals"]["exits"])


def push_counts(agent: AgentProcess, minutes: range, truth: list[int]) -> None:
    """Push one period per minute, alternating doors; add what was accepted to `truth` [in, out]."""
    for minute in minutes:
        door = "door-1" if minute % 2 else "door-2"
        body = period(minute)
        assert agent.push(door, body) == 200
        truth[0] += body["in"]
        truth[1] += body["out"]


def test_readings_reach_the_api_exactly_once(
    tmp_path: Path, pg_dsn: str, collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    site, token, key = bootstrap(pg_dsn)
    agent = agent_process(collector.url, token, tmp_path / "agent")
    truth = [0, 0]
    push_counts(agent, range(40), truth)
    # A device retrying a period it already delivered changes nothing.
    assert agent.push("door-2", period(0)) == 200
    sale = {"id": "T-1", "at": "2026-03-08T11:00:00+01:00", "amount": 1999, "currency": "EUR", "items": 2}
    assert agent.push("pos-1", sale) == 200
    assert agent.push("pos-1", sale) == 200
    agent.wait_drained()
    assert totals(collector, site, key) == tuple(truth)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM people_counts").fetchone() == (40,)
        assert conn.execute("SELECT count(*), sum(amount_minor) FROM transactions").fetchone() == (1, 1999)


def test_collector_outage_buffers_then_drains_exactly(
    tmp_path: Path, pg_dsn: str, collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
) -> None:
    port = free_port()
    collector = collector_process("--database-url", pg_dsn, port=port)
    site, token, key = bootstrap(pg_dsn)
    agent = agent_process(collector.url, token, tmp_path / "agent")
    truth = [0, 0]
    push_counts(agent, range(20), truth)

    collector.kill()
    push_counts(agent, range(20, 60), truth)
    assert agent.depth() >= 40, "with the collector gone, readings wait in the buffer"
    assert agent.proc is not None and agent.proc.poll() is None

    collector = collector_process("--database-url", pg_dsn, port=port)
    push_counts(agent, range(60, 70), truth)
    agent.wait_drained()
    assert totals(collector, site, key) == tuple(truth)


def test_agent_killed_right_after_accepting_loses_nothing(
    tmp_path: Path, pg_dsn: str, collector_process: Callable[..., CollectorProcess],
    agent_process: Callable[..., AgentProcess],
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    site, token, key = bootstrap(pg_dsn)
    agent = agent_process(collector.url, token, tmp_path / "agent")
    truth = [0, 0]
    for round_ in range(3):
        push_counts(agent, range(round_ * 30, round_ * 30 + 30), truth)
        agent.kill()
        agent.start()
    # Devices re-send what they delivered just before the kill: dropped, not added.
    for minute in range(60, 90):
        assert agent.push("door-1" if minute % 2 else "door-2", period(minute)) == 200
    agent.wait_drained()
    assert totals(collector, site, key) == tuple(truth)
    assert agent.stop() == 0


def test_demo_runs_and_its_totals_match() -> None:
    # The embedded cluster runs as the postgres user when we are root: its folder must be reachable.
    home = Path(tempfile.mkdtemp(prefix="ff-demo-"))
    home.chmod(0o755)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "footfall", "demo", "--duration", "6", "--data-dir", str(home / "demo"),
             "--port", str(free_port())],
            capture_output=True, text=True, timeout=300, check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the API's totals equal what the store generated" in done.stdout
    assert "agent RSS" in done.stdout
