"""Revoke and rotate-key through `footfall fleet`, with real agent processes: a revoked agent's uploads are
refused at once and its readings wait on the gateway; a rotated key works and the old one stops working."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from footfall.agent.identity import load_key

from tests.fixtures.agent import AgentProcess, enroll_agent
from tests.fixtures.collector import EnrolledAgent, count_record
from tests.fleet.conftest import FAST_HEARTBEAT, Fleet, wait_for

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)


def identity(agent: AgentProcess) -> EnrolledAgent:
    """The agent as the collector fixtures know agents: its id and its current private key."""
    data = json.loads((agent.state_dir / "identity.json").read_text())
    return EnrolledAgent(data["agent_id"], load_key(agent.state_dir), data["organization"], data["site"],
                         data["timezone"])


def upload(url: str, agent: EnrolledAgent, seq: int) -> tuple[int, Any]:
    """One signed upload straight to the collector, as this agent."""
    body = agent.body([count_record(seq, T0 + timedelta(minutes=seq))])
    request = urllib.request.Request(url + "/v1/ingest", data=body, headers=agent.headers(body), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def heartbeat(url: str, agent: EnrolledAgent) -> int:
    """A minimal signed heartbeat as this agent (no data: it moves no seq mark); the status."""
    body = json.dumps({"v": 1, "sent_at_ms": int(datetime.now(UTC).timestamp() * 1000)}).encode()
    headers = {**agent.headers(body, path="/v1/agents/heartbeat"), "Content-Type": "application/json"}
    request = urllib.request.Request(url + "/v1/agents/heartbeat", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def period(minute: int) -> dict[str, object]:
    return {"start": f"2026-03-08T11:{minute:02d}:00Z", "end": f"2026-03-08T11:{minute + 1:02d}:00Z",
            "in": 1, "out": 0}


def test_a_revoked_agent_is_refused_at_once_and_keeps_its_readings_until_enrolled_again(
    fleet: Fleet, tmp_path: Path, agent_process: Callable[..., AgentProcess]
) -> None:
    agent = agent_process(fleet.url, fleet.token(), tmp_path / "gw", extra=FAST_HEARTBEAT)
    me = identity(agent)
    for minute in range(5):
        assert agent.push("door-1", period(minute)) == 200
    agent.wait_drained()

    revoked = fleet.ok("agents", "revoke", me.id)
    assert "stay buffered on the gateway" in revoked.err
    assert upload(fleet.url, me, 10_000) == (401, {"error": "revoked_agent", "message": revoked_message(me.id)})
    for minute in range(5, 12):
        assert agent.push("door-1", period(minute)) == 200, "the devices are still served"
    wait_for(lambda: (agent.status_file().get("upload") or {}).get("state") == "re-enroll",
             what="the agent to see its uploads refused")
    wait_for(lambda: (agent.status_file().get("heartbeat") or {}).get("state") == "refused",
             what="the agent to see its heartbeats refused")
    assert agent.depth() == 7, "the readings wait on the gateway"
    assert fleet.sql("SELECT count(*) FROM people_counts") == [(5,)]
    assert [a["state"] for a in fleet.ok("agents", "list", "--json").json()] == ["revoked"]
    again = fleet.ok("agents", "revoke", me.id)
    assert "already" in again.err

    # Enrolled again (a new token, a new key), the running agent delivers what it kept.
    enroll_agent(agent.config, fleet.url, fleet.token(), force=True)
    agent.wait_drained()
    assert fleet.sql("SELECT count(*) FROM people_counts") == [(12,)]
    states = sorted(a["state"] for a in fleet.ok("agents", "list", "--json").json())
    assert states == ["online", "revoked"]


def revoked_message(agent_id: str) -> str:
    return f"agent {agent_id!r} has been revoked; enroll it again with a new token"


def test_a_rotated_key_works_and_the_old_one_is_refused(
    fleet: Fleet, tmp_path: Path, agent_process: Callable[..., AgentProcess]
) -> None:
    agent = agent_process(fleet.url, fleet.token(), tmp_path / "gw", extra=FAST_HEARTBEAT)
    before = identity(agent)
    old_pem = (agent.state_dir / "agent.key").read_bytes()
    assert heartbeat(fleet.url, before) == 200

    flagged = fleet.ok("agents", "rotate-key", before.id)
    assert "at its next heartbeat" in flagged.err
    def rotated() -> dict[str, Any] | None:
        shown = fleet.agent(before.id)
        return shown if shown["key_rotated_at"] and not shown["rotate_requested_at"] else None

    shown = wait_for(rotated, what="the agent to rotate its key")
    assert any(entry["kind"] == "key_rotated" for entry in shown["log"])
    assert (agent.state_dir / "agent.key").read_bytes() != old_pem
    assert not (agent.state_dir / "agent.key.next").exists()
    assert (agent.state_dir / "agent.key").stat().st_mode & 0o777 == 0o600

    status, body = upload(fleet.url, before, 2)
    assert (status, body["error"]) == (401, "bad_signature"), "the old key stops working"
    assert heartbeat(fleet.url, before) == 401
    assert heartbeat(fleet.url, identity(agent)) == 200, "the new key works"
    # The running agent signs with the new key: its readings keep flowing.
    for minute in range(4):
        assert agent.push("door-2", period(minute)) == 200
    agent.wait_drained()
    assert fleet.sql("SELECT count(*) FROM people_counts WHERE sensor = 'door-2'") == [(4,)]
    assert "rotated" in fleet.ok("agents", "show", before.id).out
    assert fleet.cli("agents", "rotate-key", "agt_nobody000000000000").code == 5
