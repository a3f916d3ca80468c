"""`footfall fleet tokens|agents ...` against a real collector process and real agent processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.agent import AgentProcess, write_agent_config
from tests.fleet.conftest import FAST_HEARTBEAT, Fleet, wait_for


def agent_id(agent: AgentProcess) -> str:
    return str(json.loads((agent.state_dir / "identity.json").read_text())["agent_id"])


def enroll(config: Path, url: str, token: str) -> subprocess.CompletedProcess[str]:
    """`footfall agent enroll` as a technician runs it."""
    return subprocess.run(
        [sys.executable, "-m", "footfall", "agent", "enroll", "--collector", url, "--token", token,
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ},
    )


def test_a_token_enrolls_as_often_as_its_uses_and_never_once_expired_or_revoked(fleet: Fleet, tmp_path: Path) -> None:
    token = fleet.token("--uses", "1")
    assert token.startswith("ffe_")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first, second = write_agent_config(tmp_path / "a", fleet.url), write_agent_config(tmp_path / "b", fleet.url)
    assert enroll(first, fleet.url, token).returncode == 0

    used = enroll(second, fleet.url, token)
    assert used.returncode == 1 and "used up" in used.stderr, used.stderr

    short = fleet.token("--expires", "1s", "--uses", "5")
    tokens = wait_for(
        lambda: [t for t in fleet.ok("tokens", "list", "--json").json() if t["state"] == "expired"],
        what="the one-second token to expire",
    )
    assert short.startswith(tokens[0]["prefix"])
    expired = enroll(second, fleet.url, short)
    assert expired.returncode == 1 and "expired" in expired.stderr, expired.stderr

    revoked_token = fleet.token("--uses", "3")
    listed = fleet.ok("tokens", "list", "--json").json()
    newest = max(listed, key=lambda t: t["id"])
    assert revoked_token.startswith(newest["prefix"]) and newest["state"] == "active"
    fleet.ok("tokens", "revoke", str(newest["id"]))
    refused = enroll(second, fleet.url, revoked_token)
    assert refused.returncode == 1 and "revoked" in refused.stderr, refused.stderr

    table = fleet.ok("tokens", "list").out.splitlines()
    assert table[0].split() == ["ID", "PREFIX", "SITE", "STATE", "USES", "LEFT", "EXPIRES"]
    assert sorted(line.split()[3] for line in table[1:]) == ["expired", "revoked", "used_up"]
    assert token not in fleet.ok("tokens", "list", "--json").out

    other_site = fleet.cli("tokens", "create", "--site", "nowhere")
    assert other_site.code == 5 and "no site 'nowhere'" in other_site.err


def test_the_list_shows_a_stopped_agent_as_stale_after_the_threshold(
    fleet: Fleet, tmp_path: Path, agent_process: Callable[..., AgentProcess]
) -> None:
    running = agent_process(fleet.url, fleet.token(), tmp_path / "running", extra=FAST_HEARTBEAT)
    stopping = agent_process(fleet.url, fleet.token(), tmp_path / "stopping", extra=FAST_HEARTBEAT)
    ids = {agent_id(running), agent_id(stopping)}

    def listed() -> list[dict[str, object]]:
        return list(fleet.ok("agents", "list", "--stale", "3s", "--json").json())

    def heartbeating() -> list[dict[str, object]] | None:
        agents = listed()
        ready = len(agents) == 2 and all(a["state"] == "online" and a["sources_total"] == 3 for a in agents)
        return agents if ready else None

    agents = wait_for(heartbeating, what="both agents' first heartbeats")
    assert {a["id"] for a in agents} == ids
    assert all(a["version"] == "0.1.0" and a["backlog_records"] == 0 and a["sources_down"] == 0 for a in agents)

    assert stopping.stop() == 0
    wait_for(
        lambda: {a["id"]: a["state"] for a in listed()} == {agent_id(running): "online", agent_id(stopping): "stale"},
        what="the stopped agent to turn stale",
    )
    table = fleet.ok("agents", "list", "--stale", "3s", "--sort", "state").out.splitlines()
    assert table[0].split()[:4] == ["ID", "SITE", "STATE", "VERSION"]
    assert [line.split()[2] for line in table[1:]] == ["online", "stale"]
    stale_only = fleet.ok("agents", "list", "--stale", "3s", "--state", "stale", "--json").json()
    assert [a["id"] for a in stale_only] == [agent_id(stopping)]
    assert fleet.ok("agents", "list", "--site", fleet.other_site, "--json").json() == []
    # With the default threshold (15 minutes) both are still online.
    assert {a["state"] for a in fleet.ok("agents", "list", "--json").json()} == {"online"}

    said = subprocess.run([sys.executable, "-m", "footfall", "agent", "status", "--config", str(running.config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert said.returncode == 0, said.stdout + said.stderr
    assert re.search(r"^heartbeat: ok, last \d+s ago \(every 200ms\)$", said.stdout, re.MULTILINE), said.stdout
    assert re.search(r"^clock: \d+\.\d+s (behind|ahead of) the collector's$", said.stdout, re.MULTILINE)
    assert f"config: local file {running.config}" in said.stdout

    shown = fleet.agent(agent_id(running))
    assert shown["heartbeat"]["buffer"]["depth"] == 0
    assert sorted(s["name"] for s in shown["heartbeat"]["sources"]) == ["door-1", "door-2", "pos-1"]
    assert any(entry["kind"] == "first_heartbeat" for entry in shown["log"])
    human = fleet.ok("agents", "show", agent_id(running)).out
    assert "state      ONLINE" in human and "door-1: ok" in human

    assert fleet.cli("agents", "show", "agt_doesnotexist0000").code == 5
    assert fleet.cli("agents", "list", "--sort", "colour").code == 2
