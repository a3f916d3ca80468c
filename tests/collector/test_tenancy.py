"""One organization sees nothing of another: through every endpoint, and in PostgreSQL itself (row-level security)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from footfall.collector.api.openapi import document
from footfall.collector.tenancy import bind

from tests.collector.test_openapi import _routes
from tests.fixtures.collector import RunningCollector, count_record, event_record, transaction_record

DAY = datetime(2026, 6, 10, tzinfo=UTC)
# Endpoints not authenticated by an API key: agents sign (ingest) or bring a token (enroll); the rest is public.
NOT_KEYED = {("POST", "/v1/ingest"), ("POST", "/v1/agents/enroll"), ("GET", "/v1/openapi.json"),
             ("GET", "/v1/health"), ("POST", "/v1/agents/heartbeat"), ("GET", "/v1/agents/config/{version}"),
             ("POST", "/v1/agents/config/{version}/report"), ("POST", "/v1/agents/rotate-key"),
             ("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz")}


async def secret_org(collector: RunningCollector) -> tuple[str, str]:
    """Organization A with a site, a sensor, sales, an outage, a token and a pushed configuration whose names
    all contain 'secret'; (org, agent id)."""
    org = await collector.create_org("Secret Org")
    await collector.create_site(org, "secret-site", timezone="Europe/Paris")
    agent = await collector.enroll(token=await collector.create_token("secret-site", org))
    batch: list[Any] = [count_record(i + 1, DAY + i * timedelta(minutes=15), sensor="secret-door") for i in range(8)]
    batch += [transaction_record(20, DAY, currency="XAU"),
              event_record(21, DAY + timedelta(hours=1), kind="offline", sensor="secret-door")]
    assert (await collector.upload(agent, batch)).status == 200
    admin_key = await collector.create_api_key(org, "fleet_admin")
    pushed = await collector.post_json("/v1/admin/configs", {"scope": "site", "target": "secret-site",
                                                            "config": "# secret\n", "note": "secret"}, key=admin_key)
    assert pushed.status == 201, pushed.body
    return org, agent.id


async def test_another_organizations_key_sees_nothing_through_any_endpoint(collector: RunningCollector) -> None:
    secret, agent_id = await secret_org(collector)
    other = await collector.create_org("Other Org")
    await collector.create_site(other, "other-site", timezone="UTC")
    key = await collector.create_api_key(other, "fleet_admin")
    span = {"from": "2026-06-10", "to": "2026-06-11"}
    token_id = str(await collector.value("SELECT max(id) FROM enrollment_tokens WHERE org_id = %s", secret))
    version = str(await collector.value("SELECT max(version) FROM config_versions WHERE org_id = %s", secret))
    requests: dict[tuple[str, str], list[tuple[str, dict[str, str], Any]]] = {
        ("GET", "/v1/organization"): [("/v1/organization", {}, None)],
        ("GET", "/v1/sites"): [("/v1/sites", {}, None), ("/v1/sites", {"tag": "secret"}, None)],
        ("GET", "/v1/sites/{site}"): [("/v1/sites/secret-site", {}, None)],
        ("GET", "/v1/sites/{site}/sensors"): [("/v1/sites/secret-site/sensors", {}, None)],
        ("GET", "/v1/sites/{site}/outages"): [("/v1/sites/secret-site/outages", {}, None)],
        ("GET", "/v1/sites/{site}/metrics"): [("/v1/sites/secret-site/metrics", span, None)],
        ("GET", "/v1/sites/{site}/footfall"): [("/v1/sites/secret-site/footfall", span, None)],
        ("GET", "/v1/metrics"): [("/v1/metrics", span, None), ("/v1/metrics", {**span, "site": "secret-site"}, None)],
        ("GET", "/v1/admin/agents"): [("/v1/admin/agents", {}, None),
                                      ("/v1/admin/agents", {"site": "secret-site"}, None)],
        ("PATCH", "/v1/admin/organization"): [("/v1/admin/organization", {}, {"week_start": "sunday"})],
        ("POST", "/v1/admin/sites"): [("/v1/admin/sites", {}, {"id": "b-site", "timezone": "UTC"})],
        ("PATCH", "/v1/admin/sites/{site}"): [("/v1/admin/sites/secret-site", {}, {"visitors": "mean"})],
        ("PATCH", "/v1/admin/sites/{site}/sensors/{sensor}"): [
            ("/v1/admin/sites/secret-site/sensors/secret-door", {}, {"retired_at": "now"})],
        ("POST", "/v1/admin/tokens"): [("/v1/admin/tokens", {}, {"site": "secret-site", "expires": "1h", "uses": 1})],
        ("GET", "/v1/admin/tokens"): [("/v1/admin/tokens", {}, None)],
        ("POST", "/v1/admin/tokens/{id}/revoke"): [(f"/v1/admin/tokens/{token_id}/revoke", {}, None)],
        ("GET", "/v1/admin/agents/{agent}"): [(f"/v1/admin/agents/{agent_id}", {}, None)],
        ("POST", "/v1/admin/agents/{agent}/revoke"): [(f"/v1/admin/agents/{agent_id}/revoke", {}, None)],
        ("POST", "/v1/admin/agents/{agent}/rotate-key"): [(f"/v1/admin/agents/{agent_id}/rotate-key", {}, None)],
        ("POST", "/v1/admin/configs"): [("/v1/admin/configs", {}, {"scope": "site", "target": "secret-site",
                                                                   "config": "# x\n", "note": ""})],
        ("GET", "/v1/admin/configs/status"): [("/v1/admin/configs/status", {}, None)],
        ("GET", "/v1/admin/configs/{version}"): [(f"/v1/admin/configs/{version}", {}, None)],
    }
    keyed = {(m.upper(), p) for p, ops in document()["paths"].items() for m in ops} - NOT_KEYED
    assert set(requests) == keyed, "every endpoint taking an API key is tried"
    assert keyed | NOT_KEYED == _routes()
    for (method, _), calls in requests.items():
        for path, params, body in calls:
            async with collector.session.request(method, collector.url + path, params=params, json=body,
                                                 headers={"Authorization": f"Bearer {key}"}) as response:
                text = await response.text()
            assert response.status in (200, 201, 404), (method, path, response.status, text)
            if response.status == 404:
                # Answered exactly as for names that exist nowhere: the error only echoes what was asked.
                blank = path.replace("secret-", "nothing-")
                blank_params = {k: v.replace("secret-", "nothing-") for k, v in params.items()}
                async with collector.session.request(method, collector.url + blank, params=blank_params, json=body,
                                                     headers={"Authorization": f"Bearer {key}"}) as response:
                    assert response.status == 404
                    assert (await response.text()).replace("nothing-", "secret-") == text
                continue
            for leak in ("secret", secret, agent_id, "XAU"):
                assert leak not in text, (method, path, text)
    # Organization A is untouched.
    assert await collector.value("SELECT week_start FROM organizations WHERE id = %s", secret) == 1
    assert await collector.value("SELECT visitors FROM sites WHERE org_id = %s", secret) == "entries"
    assert await collector.value("SELECT retired_at FROM site_sensors WHERE org_id = %s", secret) is None
    assert await collector.value("SELECT status FROM agents WHERE id = %s", agent_id) == "active"
    assert await collector.value("SELECT revoked FROM enrollment_tokens WHERE id = %s", int(token_id)) is False


async def test_row_security_bounds_the_api_role_even_without_a_where(collector: RunningCollector) -> None:
    secret, _ = await secret_org(collector)
    other = await collector.create_org("Other Org")
    await collector.create_site(other, "other-site", timezone="UTC")
    tables = ["sites", "agents", "api_keys", "sensors", "people_counts", "transactions", "sensor_events", "counts_15m",
              "counts_day", "sales_15m", "sales_day", "site_sensors", "sensor_coverage_day", "outages", "balance_day"]
    async with await psycopg.AsyncConnection.connect(collector.dsn, autocommit=True) as conn:
        owner = {t: await _count(conn, t) for t in tables}
        assert owner["counts_15m"] > 0 and owner["outages"] == 1
        async with conn.transaction():
            await bind(conn, other)
            assert {t: await _count(conn, t) for t in tables} == {t: 1 if t == "sites" else 0 for t in tables}
            cur = await conn.execute("UPDATE sites SET name = 'taken' WHERE org_id = %s", (secret,))
            assert cur.rowcount == 0
            cur = await conn.execute("SELECT id FROM organizations")
            assert await cur.fetchall() == [(other,)]
        async with conn.transaction():
            await conn.execute("SELECT set_config('role', 'footfall_api', true)")  # no organization bound
            assert {t: await _count(conn, t) for t in tables} == dict.fromkeys(tables, 0)
        async with conn.transaction():
            await bind(conn, secret)
            assert await _count(conn, "counts_15m") == owner["counts_15m"]
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO sites (org_id, id, name, timezone) VALUES (%s, 'x', 'x', 'UTC')",
                                       (other,))
                raise AssertionError("row security let the API role write another organization's row")
            except psycopg.errors.InsufficientPrivilege:
                pass


async def _count(conn: psycopg.AsyncConnection[Any], table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table}".encode())
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
