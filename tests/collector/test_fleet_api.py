"""The fleet endpoints on a real collector: signed agent requests (heartbeat, configuration, key rotation;
SPEC.md §8-11), the fleet admin API's organization boundary, and /metrics, /healthz, /readyz."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.protocol import fleet as proto
from footfall.protocol.envelope import encode_body, make_batch
from footfall.protocol.signing import generate_key, public_key_b64, sign_request

from tests.fixtures.collector import Answer, EnrolledAgent, RunningCollector, count_record
from tests.protocol.weak_keys import FORGED, SMALL_ORDER

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)


async def signed(
    collector: RunningCollector, agent: EnrolledAgent, method: str, path: str, payload: Any = None, *,
    key: Ed25519PrivateKey | None = None, timestamp: int | None = None, offset: float | None = None,
) -> Answer:
    """A fleet request signed as `agent` (with `key` instead of its own, if given)."""
    body = proto.dump(payload) if payload is not None else b""
    ts = int(time.time()) if timestamp is None else timestamp
    headers = sign_request(key or agent.key, method, path, agent.id, ts, body).as_dict()
    if payload is not None:
        headers["Content-Type"] = "application/json"
    if offset is not None:
        headers[proto.HEADER_CLOCK_OFFSET] = str(offset)
    async with collector.session.request(method, collector.url + path, data=body, headers=headers) as response:
        text = await response.text()
        return Answer(response.status, json.loads(text) if text else None, dict(response.headers))


def beat(**extra: Any) -> dict[str, Any]:
    return {"v": 1, "sent_at_ms": int(time.time() * 1000), "version": "9.9.9", "hostname": "gw-7", **extra}


async def fleet_admin(collector: RunningCollector, org: str) -> str:
    return await collector.create_api_key(org, "fleet_admin")


async def test_a_heartbeat_is_stored_and_answered_with_the_wanted_config(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    key = await fleet_admin(collector, agent.org)
    sources = [{"name": "door", "state": "down", "last_error": "no route to host", "errors": 3}]
    answer = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH,
                          beat(buffer={"depth": 42, "oldest_taken_ms": int(T0.timestamp() * 1000)}, sources=sources,
                               disk_free_bytes=10**9, future_key={"ignored": True}))
    assert answer.status == 200, answer.body
    decoded = proto.decode_heartbeat_answer(json.dumps(answer.body).encode())
    assert decoded.config is None and decoded.rotate_key is False
    assert abs(decoded.server_time_ms / 1000 - time.time()) < 60

    listed = (await collector.get("/v1/admin/agents", key=key)).body["agents"]
    (row,) = listed
    assert (row["version"], row["hostname"], row["backlog_records"], row["sources_down"], row["sources_total"]) == (
        "9.9.9", "gw-7", 42, 1, 1)
    assert row["backlog_oldest_at"] == T0.isoformat() and row["state"] == "online"
    shown = (await collector.get(f"/v1/admin/agents/{agent.id}", key=key)).body
    assert {e["kind"] for e in shown["log"]} >= {"first_heartbeat", "source_down"}
    assert any("no route to host" in e["detail"] for e in shown["log"])

    pushed = await collector.post_json("/v1/admin/configs", {"scope": "site", "target": agent.site,
                                                             "config": "[agent]\n"}, key=key)
    assert pushed.status == 201 and pushed.body["agents"] == [agent.id]
    answer = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat())
    assert answer.body["config"] == {"version": pushed.body["version"], "sha256": proto.text_sha256("[agent]\n"),
                                     "path": proto.config_path(pushed.body["version"])}
    fetched = await signed(collector, agent, "GET", proto.config_path(pushed.body["version"]))
    document = proto.decode_config_document(json.dumps(fetched.body).encode())
    assert document.config == "[agent]\n"


async def test_malformed_unsigned_stale_and_revoked_heartbeats_are_refused(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    async with collector.session.post(collector.url + proto.HEARTBEAT_PATH, json=beat()) as response:
        assert (response.status, (await response.json())["error"]) == (401, "missing_signature")
    assert (await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, {"v": 2})).body["error"] == "bad_request"
    bad_type = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat(buffer={"depth": "lots"}))
    assert bad_type.status == 400 and "buffer.depth must be an integer" in bad_type.body["message"]
    stale = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat(), timestamp=int(time.time()) - 900)
    assert (stale.status, stale.body["error"]) == (401, "timestamp_out_of_window")
    other = generate_key()
    forged = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat(), key=other)
    assert (forged.status, forged.body["error"]) == (401, "bad_signature")
    key = await fleet_admin(collector, agent.org)
    assert (await collector.post_json(f"/v1/admin/agents/{agent.id}/revoke", {}, key=key)).status == 200
    revoked = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat())
    assert (revoked.status, revoked.body["error"]) == (401, "revoked_agent")


async def test_clock_skew_is_estimated_from_the_request_time_less_the_offset_the_agent_applied(
    collector: RunningCollector,
) -> None:
    agent = await collector.enroll()
    key = await fleet_admin(collector, agent.org)
    ahead = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat(), timestamp=int(time.time()) + 120)
    assert 117 <= ahead.body["clock_skew_s"] <= 122
    # An agent 400 s behind that corrected its request clock by +400 s: inside the window, and still shown as -400.
    corrected = await signed(collector, agent, "POST", proto.HEARTBEAT_PATH, beat(), offset=400.0)
    assert -403 <= corrected.body["clock_skew_s"] <= -398
    row = (await collector.get("/v1/admin/agents", key=key)).body["agents"][0]
    assert -403 <= row["clock_skew_s"] <= -398
    # Uploads feed the same estimate from their batch's own clock (here 60 s ahead), header or not.
    body = encode_body(make_batch(agent.id, [count_record(1, T0)], int((time.time() + 60) * 1000)))
    headers = {**agent.headers(body), proto.HEADER_CLOCK_OFFSET: "-60"}
    assert (await collector.post_ingest(body, headers)).status == 200
    row = (await collector.get("/v1/admin/agents", key=key)).body["agents"][0]
    assert 57 <= row["clock_skew_s"] <= 62


async def test_a_key_rotation_needs_the_old_key_and_the_new_keys_proof_and_survives_a_lost_answer(
    collector: RunningCollector,
) -> None:
    agent = await collector.enroll()
    other = await collector.enroll()
    new = generate_key()
    # An upload first, so the collector's key cache holds the old key.
    body = agent.body([count_record(1, T0)])
    assert (await collector.post_ingest(body, agent.headers(body))).status == 200

    wrong_proof = proto.make_rotation(agent.id, generate_key(), new).as_json()
    refused = await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, wrong_proof)
    assert refused.status == 400 and "proof" in refused.body["message"]
    taken = proto.KeyRotation(public_key_b64(other.key), proto.make_rotation(agent.id, agent.key, other.key).proof)
    assert (await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, taken.as_json())).status == 409

    rotation = proto.make_rotation(agent.id, agent.key, new).as_json()
    done = await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, rotation)
    assert done.status == 200 and done.body == {"agent_id": agent.id, "rotated": True}
    # The answer was lost: the agent sends it again with its old key (refused), then with the new one.
    again = await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, rotation)
    assert (again.status, again.body["error"]) == (401, "bad_signature")
    assert (await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, rotation, key=new)).status == 200

    body = agent.body([count_record(2, T0 + timedelta(minutes=15))])
    old = await collector.post_ingest(body, agent.headers(body))
    assert (old.status, old.body["error"]) == (401, "bad_signature")
    rotated = EnrolledAgent(agent.id, new, agent.org, agent.site, agent.timezone)
    assert (await collector.post_ingest(body, rotated.headers(body))).status == 200
    assert await collector.value("SELECT public_key FROM agents WHERE id = %s", agent.id) == base64.b64decode(
        public_key_b64(new))


async def test_configs_are_only_fetched_by_the_agents_they_were_pushed_to_and_reports_are_kept(
    collector: RunningCollector,
) -> None:
    org = await collector.create_org()
    site_a, site_b = await collector.create_site(org), await collector.create_site(org)
    a = await collector.enroll(token=await collector.create_token(site_a, org))
    b = await collector.enroll(token=await collector.create_token(site_b, org))
    stranger = await collector.enroll()
    key = await fleet_admin(collector, org)
    to_a = (await collector.post_json("/v1/admin/configs", {"scope": "agent", "target": a.id,
                                                            "config": "# a\n"}, key=key)).body["version"]
    to_all = (await collector.post_json("/v1/admin/configs", {"scope": "all", "config": "# all\n"}, key=key)).body
    assert sorted(to_all["agents"]) == sorted([a.id, b.id])
    assert (await signed(collector, b, "GET", proto.config_path(to_a))).status == 404
    assert (await signed(collector, stranger, "GET", proto.config_path(to_all["version"]))).status == 404
    assert (await signed(collector, a, "GET", proto.config_path(to_a))).status == 200, "an older push to it"

    report = await signed(collector, a, "POST", proto.config_report_path(to_all["version"]),
                          {"status": "rejected", "error": "sources[0].adapter: no adapter profile named 'x'"})
    assert report.status == 200
    assert (await signed(collector, b, "POST", proto.config_report_path(to_all["version"]),
                         {"status": "applied"})).status == 200
    assert (await signed(collector, b, "POST", proto.config_report_path(1), {"status": "maybe"})).status == 400
    status = (await collector.get("/v1/admin/configs/status", key=key)).body
    states = {row["id"]: (row["config_state"], row["applied"], row["error"]) for row in status["agents"]}
    assert states == {a.id: ("rejected", 0, "sources[0].adapter: no adapter profile named 'x'"),
                      b.id: ("current", to_all["version"], "")}
    (latest, first) = status["versions"]
    assert (latest["desired_by"], latest["applied"], latest["rejected"], latest["pending"]) == (2, 1, 1, 0)
    assert first["desired_by"] == 0, "the push to all replaced the push to a"


async def test_a_fleet_admin_key_sees_nothing_of_another_organization(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    mine = await fleet_admin(collector, agent.org)
    pushed = (await collector.post_json("/v1/admin/configs", {"scope": "all", "config": ""}, key=mine)).body
    token_id = (await collector.post_json("/v1/admin/tokens", {"site": agent.site}, key=mine)).body["id"]
    theirs = await fleet_admin(collector, await collector.create_org())
    assert (await collector.get("/v1/admin/agents", key=theirs)).body["agents"] == []
    assert (await collector.get("/v1/admin/tokens", key=theirs)).body["tokens"] == []
    assert (await collector.get("/v1/admin/configs/status", key=theirs)).body["versions"] == []
    for method, path in [
        ("GET", f"/v1/admin/agents/{agent.id}"), ("POST", f"/v1/admin/agents/{agent.id}/revoke"),
        ("POST", f"/v1/admin/agents/{agent.id}/rotate-key"), ("POST", f"/v1/admin/tokens/{token_id}/revoke"),
        ("GET", f"/v1/admin/configs/{pushed['version']}"),
    ]:
        request = collector.get(path, key=theirs) if method == "GET" else collector.post_json(path, {}, key=theirs)
        answer = await request
        assert answer.status == 404, (path, answer.body)
    for scope, target in (("agent", agent.id), ("site", agent.site)):
        answer = await collector.post_json("/v1/admin/configs", {"scope": scope, "target": target, "config": ""},
                                           key=theirs)
        assert answer.status == 404
    assert (await collector.post_json("/v1/admin/tokens", {"site": agent.site}, key=theirs)).status == 404
    analyst = await collector.create_api_key(agent.org, "analyst")
    assert (await collector.get("/v1/admin/agents", key=analyst)).status == 403
    assert await collector.value("SELECT status FROM agents WHERE id = %s", agent.id) == "active"


async def test_metrics_and_probes(collector: RunningCollector, collector_factory: Any) -> None:
    agent = await collector.enroll()
    body = agent.body([count_record(1, T0), count_record(2, T0 + timedelta(minutes=15))])
    assert (await collector.post_ingest(body, agent.headers(body))).status == 200
    assert (await collector.post_ingest(body, agent.headers(body))).status == 200
    assert (await collector.post_ingest(b"junk", agent.headers(b"junk"))).status == 400
    assert (await collector.get("/healthz")).body == {"status": "ok"}
    ready = await collector.get("/readyz")
    assert ready.status == 200 and ready.body["database"] == "ok"
    async with collector.session.get(collector.url + "/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    assert 'footfall_collector_requests_total{code="200",method="POST",route="/v1/ingest"} 2.0' in text
    assert 'footfall_collector_requests_total{code="400",method="POST",route="/v1/ingest"} 1.0' in text
    assert "footfall_collector_ingest_records_total 2.0" in text
    assert "footfall_collector_ingest_duplicates_total 2.0" in text
    assert 'footfall_collector_ingest_rejected_total{code="malformed_batch"} 1.0' in text
    assert "footfall_collector_ingest_batch_seconds_count 2.0" in text
    assert 'footfall_collector_agents{state="online"} 1.0' in text
    assert 'footfall_collector_partitions{table="people_counts"}' in text
    assert "footfall_collector_database_up 1.0" in text

    down = await collector_factory(dsn=collector.dsn.replace("dbname=", "dbname=nope_"), database_timeout=0.5)
    assert (await down.get("/healthz")).status == 200
    unready = await down.get("/readyz")
    assert unready.status == 503 and unready.body["database"] == "unreachable"
    async with down.session.get(down.url + "/metrics") as response:
        assert response.status == 200
        assert "footfall_collector_database_up 0.0" in await response.text()


async def test_a_rotation_to_a_small_order_key_is_refused_and_the_key_stays(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    # Signed with the agent's real key; the new key is the identity and the "proof" the forgery it accepts.
    forged = proto.KeyRotation(base64.b64encode(bytes.fromhex(SMALL_ORDER[2])).decode(), FORGED)
    refused = await signed(collector, agent, "POST", proto.ROTATE_KEY_PATH, forged.as_json())
    assert (refused.status, refused.body["error"]) == (400, "bad_request"), refused.body
    assert "small order" in refused.body["message"]
    assert await collector.value("SELECT public_key FROM agents WHERE id = %s", agent.id) == base64.b64decode(
        public_key_b64(agent.key))
    assert (await collector.upload(agent, [count_record(1, T0)])).status == 200
