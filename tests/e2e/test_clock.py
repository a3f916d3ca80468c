"""A gateway that boots with a wrong clock, under libfaketime: a real agent process and a real collector.

The agent runs with libfaketime preloaded and its time taken from a file, so the test can
set the wall clock years back and then "sync" it by rewriting the file; the monotonic
clock is left alone (FAKETIME_DONT_FAKE_MONOTONIC), as on a real gateway. Readings the agent
times itself are held while its clock is wrong and reach the collector re-stamped to the
true time; readings the device times go up at once; the collector shows the agent's clock
state, its skew and the re-stamped count.
"""

from __future__ import annotations

import glob
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from footfall.collector.cli import app as collector_cli
from typer.testing import CliRunner

from tests.e2e.test_pipeline import bootstrap, period
from tests.fixtures.agent import AgentProcess, enroll_agent
from tests.fixtures.collector import CollectorProcess

POLLED = """
[profile]
name = "polled-totals"
description = "running totals without a time: the agent times each reading"
format = "json"
reading = "count"
counter = "cumulative"

[time]
source = "agent"

[fields]
entries = { path = "in" }
exits = { path = "out" }
"""


def libfaketime() -> str:
    """The thread-safe libfaketime that ./scripts/test installs (package faketime)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: ./scripts/test installs the faketime package"
    return found[0]


def wait_for(check: Callable[[], Any], what: str, within: float = 60) -> Any:
    """Poll until `check()` is truthy; its value."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


def test_a_gateway_booting_years_behind_holds_its_readings_and_restamps_them_once_synced(
    tmp_path: Path, pg_dsn: str, collector_process: Callable[..., CollectorProcess]
) -> None:
    collector = collector_process("--database-url", pg_dsn)
    _, token, _ = bootstrap(pg_dsn)
    folder = tmp_path / "agent"
    (folder / "adapters" / "polled-totals").mkdir(parents=True)
    (folder / "adapters" / "polled-totals" / "profile.toml").write_text(POLLED)
    config = folder / "agent.toml"
    config.write_text(
        '[agent]\nstate_dir = "state"\nadapter_dirs = ["adapters"]\n'
        f'[collector]\nurl = "{collector.url}"\ntimeout = "5s"\n'
        '[buffer]\ncommit_interval = "20ms"\n[upload]\nmax_age = "50ms"\nbackoff_initial = "50ms"\n'
        'backoff_max = "500ms"\n[http_push]\nlisten = "127.0.0.1:0"\n'
        '[[sources]]\nname = "gate"\ntransport = "http_push"\nadapter = "polled-totals"\npath = "/push/gate"\n'
        '[[sources]]\nname = "door-1"\ntransport = "http_push"\nadapter = "generic-json-counter"\n'
        'path = "/push/door-1"\n'
    )
    enroll_agent(config, collector.url, token)
    clock_file = tmp_path / "faketime"
    clock_file.write_text("-1000d\n")  # the gateway's clock reads 1000 days ago
    agent = AgentProcess(
        config,
        folder / "agent.log",
        env={
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(clock_file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    agent.start()
    try:
        assert agent.status_file()["clock"]["reason"] == "before_build"
        pushed_at: list[float] = []
        for total in (100, 112, 130):
            assert agent.push("gate", {"in": total, "out": total // 2}) == 200
            pushed_at.append(time.time())
        assert agent.push("door-1", period(0)) == 200
        wait_for(lambda: agent.status_file()["buffer"]["held"] >= 2, "the agent-timed readings to be held")

        def agents_row() -> tuple[Any, ...]:
            with psycopg.connect(pg_dsn) as conn:
                row = conn.execute(
                    "SELECT clock_state, clock_skew_s, readings_restamped, readings_suspect, hw_seq FROM agents"
                ).fetchone()
                assert row is not None
                return tuple(row)

        skewed = wait_for(lambda: (row := agents_row())[0] == "skewed" and row, "the device's reading and the skew")
        assert skewed[1] < -999 * 86400, "the collector sees the agent's own clock, not its corrected requests"
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM people_counts WHERE sensor = 'gate'").fetchone() == (0,)

        clock_file.write_text("+0\n")  # NTP's first sync steps the clock by 1000 days
        wait_for(lambda: agents_row()[2] == 2, "the held readings to arrive re-stamped")
        wait_for(lambda: agent.depth() == 0 and agent.status_file()["buffer"]["held"] == 0, "everything sent")
    finally:
        assert agent.stop() == 0, agent.logs()[-3000:]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM period_start), extract(epoch FROM period_end), entries, clock "
            "FROM people_counts WHERE sensor = 'gate' ORDER BY period_start"
        ).fetchall()
        door = conn.execute("SELECT clock FROM people_counts WHERE sensor = 'door-1'").fetchall()
    assert [(entries, clock) for _, _, entries, clock in rows] == [(12, "restamped"), (18, "restamped")]
    for (_, end, _, _), truth in zip(rows, pushed_at[1:], strict=True):
        assert abs(float(end) - truth) < 5, "re-stamped to the true time of the reading"
    assert float(rows[0][1]) == float(rows[1][0]), "the two periods still join"
    assert door == [("ok",)], "the device's own time was never touched"
    listed = CliRunner().invoke(collector_cli, ["agents", "list", "--database-url", pg_dsn, "--json"])
    (info,) = json.loads(listed.stdout)
    assert info["clock_state"] in ("ok", "restamped") and info["readings_restamped"] == 2
    assert abs(info["clock_skew_s"]) < 30
