"""POST /v1/agents/enroll (SPEC.md §5): tokens bound to a site, spent once, refused with a reason, nothing half-done."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from footfall.collector import admin
from footfall.protocol.signing import generate_key, public_key_b64

from tests.fixtures.collector import Answer, RunningCollector
from tests.protocol.weak_keys import NOT_CANONICAL, SMALL_ORDER

ENROLL = "/v1/agents/enroll"


async def enroll(collector: RunningCollector, token: str, key_b64: str | None = None) -> Answer:
    return await collector.post_json(
        ENROLL, {"token": token, "public_key": key_b64 or public_key_b64(generate_key()), "hostname": "gw-1"}
    )


async def test_enrollment_answers_the_agent_id_its_site_and_the_sites_zone(collector: RunningCollector) -> None:
    org = await collector.create_org("Acme Retail")
    site = await collector.create_site(org, "nyc-05", timezone="America/New_York")
    key = generate_key()
    answer = await enroll(collector, await collector.create_token(site, org), public_key_b64(key))
    assert answer.status == 201, answer.body
    assert answer.body["agent_id"].startswith("agt_")
    assert {k: answer.body[k] for k in ("organization", "site", "timezone")} == {
        "organization": "acme-retail", "site": "nyc-05", "timezone": "America/New_York",
    }
    assert await collector.rows("SELECT org_id, site_id, public_key, status, hostname, hw_seq FROM agents") == [
        ("acme-retail", "nyc-05", base64.b64decode(public_key_b64(key)), "active", "gw-1", 0),
    ]


async def test_a_token_is_spent_by_its_uses(collector: RunningCollector) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    token = await collector.create_token(site, org, uses=2)
    assert (await enroll(collector, token)).status == 201
    assert (await enroll(collector, token)).status == 201
    third = await enroll(collector, token)
    assert (third.status, third.body["error"]) == (401, "token_used_up")
    assert await collector.value("SELECT count(*) FROM agents") == 2


async def test_a_retry_with_the_same_token_and_key_gets_the_same_agent(collector: RunningCollector) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    token, key = await collector.create_token(site, org), public_key_b64(generate_key())
    first, retry = await enroll(collector, token, key), await enroll(collector, token, key)
    assert (first.status, retry.status) == (201, 201)
    assert retry.body == first.body
    assert await collector.value("SELECT count(*) FROM agents") == 1
    # The same key with another token is a conflict: one key, one agent.
    other = await enroll(collector, await collector.create_token(site, org), key)
    assert (other.status, other.body["error"]) == (409, "key_already_enrolled")


@pytest.mark.parametrize("problem", ["unknown", "expired", "revoked", "used_up"])
async def test_an_unusable_token_is_401_and_enrolls_nothing(collector: RunningCollector, problem: str) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    async with collector.connection() as conn:
        issued = await admin.create_enrollment_token(conn, site, org_id=org)
        token = issued.token
        if problem == "unknown":
            token = "ffe_" + "x" * 43
        elif problem == "expired":
            await conn.execute("UPDATE enrollment_tokens SET expires_at = now() - interval '1 second'")
        elif problem == "revoked":
            await admin.revoke_enrollment_token(conn, issued.id)
        else:
            assert (await enroll(collector, token)).status == 201
    agents_before = await collector.value("SELECT count(*) FROM agents")
    answer = await enroll(collector, token)
    expected = {"unknown": "unknown_token", "expired": "token_expired", "revoked": "token_revoked"}
    assert (answer.status, answer.body["error"]) == (401, expected.get(problem, "token_used_up"))
    assert "new one" in answer.body["message"]
    assert await collector.value("SELECT count(*) FROM agents") == agents_before


async def test_a_conflict_does_not_spend_the_token(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    token = await collector.create_token(agent.site, agent.org)
    clash = await enroll(collector, token, public_key_b64(agent.key))
    assert (clash.status, clash.body["error"]) == (409, "key_already_enrolled")
    assert (await enroll(collector, token)).status == 201


BAD_BODIES = [
    ("not json", b"{nope", "application/json"),
    ("not an object", b"[1, 2]", "application/json"),
    ("no token", b'{"public_key": "AAAA"}', "application/json"),
    ("key not base64", b'{"token": "ffe_x", "public_key": "***"}', "application/json"),
    ("key too short", b'{"token": "ffe_x", "public_key": "AAAA"}', "application/json"),
    ("form data", b"token=ffe_x", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("body", "content_type"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
async def test_a_malformed_request_is_400(collector: RunningCollector, body: bytes, content_type: str) -> None:
    async with collector.session.post(collector.url + ENROLL, data=body, headers={"Content-Type": content_type}) as r:
        answer = await r.json()
        assert (r.status, answer["error"]) == (400, "bad_request"), answer


async def test_admin_refuses_what_it_cannot_do(collector: RunningCollector) -> None:
    async with collector.connection() as conn:
        org = (await admin.create_organization(conn, "Café Müller")).id
        assert org == "cafe-muller"
        with pytest.raises(admin.AdminError, match="already exists"):
            await admin.create_organization(conn, "Cafe Muller")
        with pytest.raises(admin.AdminError, match="did you mean 'Europe/Paris'"):
            await admin.create_site(conn, org, "s1", "Europe/Pariss")
        with pytest.raises(admin.AdminError, match="site id"):
            await admin.create_site(conn, org, "Bad Id", "Europe/Paris")
        with pytest.raises(admin.AdminError, match="no organization"):
            await admin.create_site(conn, "nobody", "s1", "Europe/Paris")
        await admin.create_site(conn, org, "s1", "Europe/Paris")
        other = (await admin.create_organization(conn, "Other")).id
        await admin.create_site(conn, other, "s1", "Asia/Tokyo")
        with pytest.raises(admin.AdminError, match="several organizations"):
            await admin.create_enrollment_token(conn, "s1")
        with pytest.raises(admin.AdminError, match="role"):
            await admin.create_api_key(conn, org, "root")
        issued = await admin.create_enrollment_token(conn, "s1", org_id=other, expires=timedelta(minutes=5), uses=3)
        (listed,) = await admin.list_enrollment_tokens(conn, other)
        assert (listed.id, listed.uses_left, listed.site_id) == (issued.id, 3, "s1")
        assert issued.token.startswith(listed.prefix) and len(listed.prefix) < len(issued.token) // 3
        stored = await (await conn.execute("SELECT token_hash FROM enrollment_tokens")).fetchall()
        assert all(issued.token.encode() not in bytes(row[0]) for row in stored)


@pytest.mark.parametrize("key_hex", SMALL_ORDER + NOT_CANONICAL)
async def test_a_weak_public_key_is_refused_and_enrolls_nothing(collector: RunningCollector, key_hex: str) -> None:
    # A small-order key verifies a forged signature over any body: whoever enrolled it could be anyone.
    org = await collector.create_org()
    site = await collector.create_site(org)
    token = await collector.create_token(site, org, uses=1)
    answer = await enroll(collector, token, base64.b64encode(bytes.fromhex(key_hex)).decode())
    assert (answer.status, answer.body["error"]) == (400, "bad_request"), answer.body
    assert "small order" in answer.body["message"] or "canonical" in answer.body["message"]
    assert await collector.value("SELECT count(*) FROM agents") == 0
    assert (await enroll(collector, token)).status == 201, "the token was not spent"
