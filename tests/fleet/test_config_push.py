"""`footfall fleet config push|status` against a real collector and real agents: applied without losing a
buffered reading, an invalid configuration refused with its reasons while the agent keeps the old one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentProcess, enroll_agent
from tests.fleet.conftest import Fleet, wait_for

SOURCES = """
[[sources]]
name = "door-1"
transport = "http_push"
adapter = "generic-json-counter"
path = "{door_path}"

[[sources]]
name = "pos-1"
transport = "http_push"
adapter = "generic-json-pos"
path = "/push/pos-1"
"""


def agent_toml(*, max_age: str, door_path: str = "/push/door-1", extra: str = "") -> str:
    """An agent.toml whose uploads wait `max_age` before a partial batch leaves."""
    return (
        '[agent]\nstate_dir = "state"\n\n[collector]\ntimeout = "5s"\n\n[buffer]\ncommit_interval = "20ms"\n\n'
        f'[upload]\nmax_age = "{max_age}"\nbackoff_initial = "50ms"\nbackoff_max = "500ms"\n\n'
        '[http_push]\nlisten = "127.0.0.1:0"\n\n[heartbeat]\ninterval = "200ms"\n'
        + extra
        + SOURCES.format(door_path=door_path)
    )


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agent processes this test starts itself; killed at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()


def start_agent(fleet: Fleet, folder: Path, text: str, started: list[AgentProcess]) -> AgentProcess:
    folder.mkdir(parents=True)
    config = folder / "agent.toml"
    config.write_text(text)
    enroll_agent(config, fleet.url, fleet.token())
    agent = AgentProcess(config, folder / "agent.log")
    started.append(agent)
    agent.start()
    return agent


def period(minute: int) -> dict[str, object]:
    return {"start": f"2026-03-08T10:{minute:02d}:00Z", "end": f"2026-03-08T10:{minute + 1:02d}:00Z",
            "in": 2, "out": 1}


def test_a_pushed_config_is_applied_without_losing_buffered_readings_and_a_bad_one_is_refused(
    fleet: Fleet, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    # Uploads wait an hour for a full batch: what the device sends stays buffered across the push.
    agent = start_agent(fleet, tmp_path / "gw", agent_toml(max_age="1h"), agents)
    agent_id = json.loads((agent.state_dir / "identity.json").read_text())["agent_id"]
    for minute in range(20):
        assert agent.push("door-1", period(minute)) == 200
    assert agent.depth() == 20
    wait_for(lambda: fleet.agent(agent_id)["backlog_records"] == 20, what="the heartbeat to report the backlog")

    good = tmp_path / "good.toml"
    good.write_text(agent_toml(max_age="50ms", door_path="/push/door-1-v2"))
    pushed = fleet.cli("config", "push", "--agent", agent_id, str(good), "--wait", "--timeout", "60s",
                       "--poll", "100ms", "--note", "faster uploads")
    assert pushed.code == 0, pushed.out + pushed.err
    assert "1 agent(s) run v" in pushed.err

    agent.wait_drained()
    assert fleet.sql("SELECT count(*), sum(entries) FROM people_counts") == [(20, 40)]
    # The sources restarted in-process (on a new port, as the config asks for any free one).
    live = wait_for(lambda: agent.status_file() if agent.status_file().get("config", {}).get("applied_version")
                    else None, what="status.json to show the fleet configuration")
    agent.port = live["http_push"]["port"]
    assert agent.push("door-1", period(30)) == 404, "the old path is gone with the old configuration"
    assert agent.push("door-1-v2", period(31)) == 200
    agent.wait_drained()
    assert fleet.sql("SELECT count(*) FROM people_counts") == [(21,)]
    version = live["config"]["applied_version"]
    assert agent.proc is not None and agent.proc.poll() is None, "applied without a restart of the process"

    bad = tmp_path / "bad.toml"
    bad.write_text(agent_toml(max_age="50ms", extra='\n[metrics]\nlisten = "everywhere"\n').replace(
        'adapter = "generic-json-pos"', 'adapter = "generic-json-poss"'))
    refused = fleet.cli("config", "push", "--agent", agent_id, str(bad), "--wait", "--timeout", "60s",
                        "--poll", "100ms")
    assert refused.code == 6, refused.out + refused.err
    assert f"REFUSED by {agent_id}" in refused.err and "generic-json-poss" in refused.err

    status = fleet.ok("config", "status", "--json").json()
    (row,) = status["agents"]
    assert row["applied"] == version and row["config_state"] == "rejected" and row["rejected"] == version + 1
    assert "metrics.listen" in row["error"] and "did you mean 'generic-json-pos'" in row["error"]
    table = fleet.ok("config", "status").out
    assert f"v{version + 1}" in table and "rejected" in table
    shown = fleet.agent(agent_id)
    assert shown["config_applied_version"] == version
    assert any(e["kind"] == "config_rejected" for e in shown["log"])
    # The agent still runs the good version, and says so in plain words.
    assert agent.push("door-1-v2", period(32)) == 200
    said = agent_status(agent)
    assert f"config: fleet version {version} (applied" in said
    assert f"config: fleet version {version + 1} REFUSED" in said

    # A restarted agent runs the fleet's version again, not its local file.
    assert agent.stop() == 0
    agent.start()
    assert agent.push("door-1-v2", period(33)) == 200
    agent.wait_drained()
    assert fleet.sql("SELECT count(*) FROM people_counts") == [(23,)]
    assert fleet.ok("config", "show", str(version)).out == good.read_text()


def agent_status(agent: AgentProcess) -> str:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "footfall", "agent", "status", "--config", str(agent.config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_push_to_a_site_reaches_its_agents_and_the_newest_push_wins(
    fleet: Fleet, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    first = start_agent(fleet, tmp_path / "one", agent_toml(max_age="50ms"), agents)
    second = start_agent(fleet, tmp_path / "two", agent_toml(max_age="50ms"), agents)
    ids = sorted(json.loads((a.state_dir / "identity.json").read_text())["agent_id"] for a in (first, second))
    config = tmp_path / "site.toml"
    config.write_text(agent_toml(max_age="100ms"))
    pushed = fleet.cli("config", "push", "--site", fleet.site, str(config), "--wait", "--poll", "100ms", "--json")
    assert pushed.code == 0, pushed.err
    body = json.loads(pushed.out)
    assert sorted(body["agents"]) == ids and sorted(body["outcome"]["applied"]) == ids

    moved = tmp_path / "moved.toml"
    moved.write_text(agent_toml(max_age="100ms").replace('state_dir = "state"', 'state_dir = "elsewhere"'))
    refused = fleet.cli("config", "push", "--all", str(moved), "--wait", "--poll", "100ms")
    assert refused.code == 6
    assert refused.err.count("REFUSED by") == 2 and "moves the state directory" in refused.err
    versions = fleet.ok("config", "status", "--json").json()["versions"]
    assert [(v["scope"], v["desired_by"], v["rejected"], v["running"]) for v in versions] == [
        ("all", 2, 2, 0), ("site", 0, 0, 2)
    ]
    assert fleet.cli("config", "push", "--agent", ids[0], "--site", fleet.site, str(config)).code == 2
    assert fleet.cli("config", "push", "--site", "nowhere", str(config)).code == 5
    not_toml = tmp_path / "broken.toml"
    not_toml.write_text("[agent\n")
    broken = fleet.cli("config", "push", "--all", str(not_toml))
    assert broken.code == 1 and "not valid TOML" in broken.err
