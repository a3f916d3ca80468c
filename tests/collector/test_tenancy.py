"""One organization sees nothing of another: through every endpoint, and in PostgreSQL itself (row-level security).

The tenancy gate (collector/tenancy.py) is held to its word four ways: every route of the
application is gated or on a reasoned list; no API module reaches the pool but the gate; every
table holding an organization's data has row security enabled and forced, with its policies;
and the writes of the fleet API and the signed agent routes are seen, by a trigger in PostgreSQL,
to run as footfall_api bound to the caller's organization.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from footfall.collector import admin, fleet
from footfall.collector.api.openapi import document
from footfall.collector.app import make_app
from footfall.collector.embedded_pg import EmbeddedPostgres
from footfall.collector.migrate import migrate
from footfall.collector.tenancy import bind, gate_of
from footfall.protocol import fleet as proto
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.collector.test_fleet_api import beat, signed
from tests.collector.test_openapi import _routes
from tests.fixtures.collector import (
    CollectorFactory,
    RunningCollector,
    count_record,
    event_record,
    transaction_record,
)

DAY = datetime(2026, 6, 10, tzinfo=UTC)
COLLECTOR = Path(__file__).resolve().parents[2] / "collector"
# Routes that act for no organization, and why they are not gated.
UNGATED = {
    ("POST", "/v1/ingest"): "agents sign each batch; ingest verifies it and writes as the service",
    ("POST", "/v1/agents/enroll"): "a one-time token, checked before any organization is known",
    ("GET", "/v1/openapi.json"): "public: the API's own description",
    ("GET", "/v1/health"): "a probe: the database answers, with process-wide counters",
    ("GET", "/healthz"): "a probe: the process serves",
    ("GET", "/readyz"): "a probe: the schema is this collector's",
    ("GET", "/metrics"): "the Prometheus scrape: fleet-wide counts, no organization's rows",
}
# Functions of collector/api/ and collector/tenancy.py that may touch the connection pool, and why.
POOL_USERS = {
    ("tenancy.py", "principal"): "the gate checks an API key before binding",
    ("tenancy.py", "connection"): "the gate's bound connections",
    ("fleet_agents.py", "verify_agent"): "reads the agent's key to check a signature, before its organization is known",
    ("agents.py", "*"): "enrollment, by a one-time token, before any organization is known",
}
# Tables holding an organization's data whose row security is enabled but not forced, and why.
NOT_FORCED = {
    table: "ingest writes it with binary COPY, which PostgreSQL refuses where row security applies to the "
    "writer; footfall_api reads it through org_boundary and may not write it"
    for table in ("people_counts", "occupancy", "transactions", "sensor_events")
}
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


def test_every_route_is_gated_or_acts_for_no_organization() -> None:
    """A route is wrapped by keyed(...) or signed(...) (collector/tenancy.py) unless UNGATED says why not."""
    app = make_app("postgresql://unused")
    seen: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        key = (route.method, info.get("formatter") or info.get("path", ""))
        seen.add(key)
        gate = gate_of(route.handler)
        if key in UNGATED:
            assert gate is None, f"{key} is gated now: take it off UNGATED"
            continue
        assert gate is not None, f"{key} bypasses the tenancy gate: wrap its handler in keyed(...) or signed(...)"
        if gate.kind == "api_key":
            assert gate.roles and set(gate.roles) <= {"analyst", "fleet_admin"}, key
            assert key not in NOT_KEYED, key
        else:
            assert key[1].startswith("/v1/agents/") and key in NOT_KEYED, key
    assert set(UNGATED) <= seen, "UNGATED names a route the application does not have"


def test_no_api_module_reaches_the_pool_but_through_the_gate() -> None:
    """Every use of `.pool` under collector/api/ and in collector/tenancy.py is one of POOL_USERS."""
    found: set[tuple[str, str]] = set()
    for path in [*sorted((COLLECTOR / "api").glob("*.py")), COLLECTOR / "tenancy.py"]:
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if any(isinstance(node, ast.Attribute) and node.attr == "pool" for node in ast.walk(function)):
                found.add((path.name, function.name))
    unexpected = {f for f in found if f not in POOL_USERS and (f[0], "*") not in POOL_USERS}
    assert not unexpected, f"these reach the pool without the tenancy gate: {sorted(unexpected)}"
    assert ("tenancy.py", "connection") in found


_ORG_TABLES = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       array(SELECT p.polname::text FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND (c.relname = 'organizations'
       OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  AND a.attname IN ('org_id', 'site_id', 'agent_id'))
       OR EXISTS (SELECT 1 FROM pg_constraint f WHERE f.conrelid = c.oid AND f.contype = 'f'
                  AND f.confrelid::regclass::text IN ('organizations', 'sites', 'agents')))
ORDER BY 1
"""


async def test_every_table_holding_an_organizations_data_has_row_security_enabled_and_forced(
    collector: RunningCollector,
) -> None:
    """Found from the catalog, not from a list: a new table with org_id, site_id or agent_id is held to it at once."""
    await secret_org(collector)  # partitions of this month exist
    tables = await collector.rows(_ORG_TABLES)
    names = {row[0] for row in tables}
    assert {"agents", "config_versions", "agent_log", "counts_15m", "people_counts"} <= names
    assert "schema_migrations" not in names
    for name, enabled, forced, policies in tables:
        assert enabled, f"{name}: row-level security is not enabled"
        assert {"org_boundary", "service"} <= set(policies), f"{name}: policies {policies}"
        assert forced or name in NOT_FORCED, f"{name}: row-level security is not forced on its owner"
    assert set(NOT_FORCED) <= names
    # Partitions: the parent's policy applies to queries through the parent; footfall_api can reach no other way.
    partitions = await collector.rows(
        "SELECT c.relname, has_table_privilege('footfall_api', c.oid, 'SELECT, INSERT, UPDATE, DELETE') "
        "FROM pg_class c WHERE c.relispartition")
    assert partitions and not any(granted for _, granted in partitions), partitions


async def test_fleet_admin_routes_of_one_organization_cannot_see_or_touch_anothers(
    collector: RunningCollector,
) -> None:
    """Organization B's fleet_admin key against A's configs, agent logs, agents and tokens: 404, and nothing moves."""
    secret, agent_id = await secret_org(collector)
    other = await collector.create_org("Other Org")
    await collector.create_site(other, "other-site", timezone="UTC")
    mine = await collector.enroll(token=await collector.create_token("other-site", other))
    key = await collector.create_api_key(other, "fleet_admin")
    token_id = await collector.value("SELECT max(id) FROM enrollment_tokens WHERE org_id = %s", secret)
    version = await collector.value("SELECT max(version) FROM config_versions WHERE org_id = %s", secret)
    logs = await collector.value("SELECT count(*) FROM agent_log WHERE org_id = %s", secret)
    assert logs > 0
    for path in (f"/v1/admin/agents/{agent_id}", f"/v1/admin/configs/{version}"):
        assert (await collector.get(path, key=key)).status == 404
    for path in (f"/v1/admin/agents/{agent_id}/revoke", f"/v1/admin/agents/{agent_id}/rotate-key",
                 f"/v1/admin/tokens/{token_id}/revoke"):
        assert (await collector.post_json(path, {}, key=key)).status == 404
    for push in ({"scope": "agent", "target": agent_id}, {"scope": "site", "target": "secret-site"}):
        assert (await collector.post_json("/v1/admin/configs", {**push, "config": "# x\n"}, key=key)).status == 404
    listed = (await collector.get("/v1/admin/agents", key=key)).body["agents"]
    assert [a["id"] for a in listed] == [mine.id]
    status = (await collector.get("/v1/admin/configs/status", key=key)).body
    assert status["versions"] == [] and [a["id"] for a in status["agents"]] == [mine.id]
    tokens = (await collector.get("/v1/admin/tokens", key=key)).body["tokens"]
    assert {t["site"] for t in tokens} == {"other-site"}
    # A's rows are as they were.
    assert await collector.rows("SELECT status, rotate_requested_at FROM agents WHERE id = %s", agent_id) == [
        ("active", None)]
    assert await collector.value("SELECT revoked FROM enrollment_tokens WHERE id = %s", token_id) is False
    assert await collector.value("SELECT count(*) FROM config_versions WHERE org_id = %s", secret) == 1
    assert await collector.value("SELECT count(*) FROM agent_log WHERE org_id = %s", secret) == logs


async def test_fleet_queries_bound_to_one_organization_find_nothing_of_another_even_when_asked(
    collector: RunningCollector,
) -> None:
    """Row security, not the queries' filters: bound to B, collector/fleet.py asked for A's rows finds none."""
    secret, agent_id = await secret_org(collector)
    other = await collector.create_org("Other Org")
    version = await collector.value("SELECT max(version) FROM config_versions WHERE org_id = %s", secret)
    async with collector.connection() as conn, conn.transaction():
        await bind(conn, other)
        with pytest.raises(fleet.NotFound):
            await fleet.config_document(conn, secret, version)
        with pytest.raises(fleet.NotFound):
            await fleet.agent_details(conn, secret, agent_id, fleet.Thresholds())
        assert (await fleet.list_fleet(conn, secret, fleet.AgentQuery()))[1] == []
        assert await admin.list_enrollment_tokens(conn, secret) == []
        for table in ("config_versions", "agent_log", "agents", "enrollment_tokens"):
            assert await _count(conn, table) == 0, table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with conn.transaction():
                await fleet.log_event(conn, secret, agent_id, "planted", "by another organization")


_AUDIT = """
CREATE TABLE gate_audit (tbl text, op text, who text, org text);
GRANT INSERT ON gate_audit TO PUBLIC;
CREATE FUNCTION gate_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gate_audit VALUES (TG_TABLE_NAME, TG_OP, current_user, current_setting('footfall.org_id', true));
    RETURN NULL;
END
$$;
"""
AUDITED = ("agents", "agent_log", "config_versions", "enrollment_tokens", "sites", "site_sensors", "organizations")


async def test_every_write_of_the_fleet_api_runs_as_footfall_api_bound_to_the_callers_organization(
    collector: RunningCollector,
) -> None:
    """A statement trigger records who wrote and for which organization: fleet admin calls, then signed agent calls."""
    secret, agent_id = await secret_org(collector)
    other = await collector.create_org("Other Org")
    await collector.create_site(other, "other-site", timezone="UTC")
    mine = await collector.enroll(token=await collector.create_token("other-site", other))
    theirs = await collector.enroll(token=await collector.create_token("secret-site", secret))
    key = await collector.create_api_key(other, "fleet_admin")
    async with collector.connection() as conn:
        await conn.execute(_AUDIT.encode())
        for table in AUDITED:
            await conn.execute(sql.SQL("CREATE TRIGGER gate_audit AFTER INSERT OR UPDATE OR DELETE ON {} "
                                       "FOR EACH STATEMENT EXECUTE FUNCTION gate_audit()")
                               .format(sql.Identifier(table)))

    token = await collector.post_json("/v1/admin/tokens", {"site": "other-site", "expires": "1h"}, key=key)
    assert token.status == 201, token.body
    calls = [
        await collector.post_json(f"/v1/admin/tokens/{token.body['id']}/revoke", {}, key=key),
        await collector.post_json("/v1/admin/configs", {"scope": "all", "config": "# all\n"}, key=key),
        await collector.post_json(f"/v1/admin/agents/{mine.id}/rotate-key", {}, key=key),
        await collector.post_json(f"/v1/admin/agents/{mine.id}/revoke", {}, key=key),
        await collector.post_json("/v1/admin/sites", {"id": "new-site", "timezone": "UTC"}, key=key),
    ]
    assert [c.status for c in calls] == [200, 201, 202, 200, 201], [c.body for c in calls]
    admin_writes = await collector.rows("SELECT DISTINCT tbl, who, org FROM gate_audit ORDER BY 1")
    assert {w[0] for w in admin_writes} >= {"enrollment_tokens", "config_versions", "agents", "agent_log", "sites"}
    assert {(who, org) for _, who, org in admin_writes} == {("footfall_api", other)}, admin_writes

    await collector.rows("DELETE FROM gate_audit RETURNING 1")
    answer = await signed(collector, theirs, "POST", proto.HEARTBEAT_PATH, beat())
    assert answer.status == 200, answer.body
    version = answer.body["config"]["version"]
    fetched = await signed(collector, theirs, "GET", proto.config_path(version))
    assert fetched.status == 200, fetched.body
    report = await signed(collector, theirs, "POST", proto.config_path(version) + "/report", {"v": 1,
                                                                                          "status": "applied"})
    assert report.status == 200, report.body
    agent_writes = await collector.rows("SELECT DISTINCT tbl, who, org FROM gate_audit ORDER BY 1")
    assert {w[0] for w in agent_writes} >= {"agents", "agent_log"}
    assert {(who, org) for _, who, org in agent_writes} == {("footfall_api", secret)}, agent_writes
    assert agent_id != theirs.id


@pytest.fixture
def ordinary_owner(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A database owned by a role neither superuser nor BYPASSRLS (as on a managed server); its DSN as that role."""
    role, database = f"ff_owner_{uuid.uuid4().hex[:10]}", f"t_owner_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_cluster.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
    try:
        yield make_conninfo(pg_cluster.dsn_for(database), user=role)
    finally:
        with psycopg.connect(pg_cluster.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


async def test_an_ordinary_owner_is_held_by_forced_row_security_once_bound_and_ingest_still_copies(
    ordinary_owner: str, collector_factory: CollectorFactory
) -> None:
    """Migrated, served and fed by a plain owner: COPY into the raw tables works, and a transaction of the owner
    bound to one organization sees and writes only that organization's rows."""
    await migrate(ordinary_owner)
    collector = await collector_factory(dsn=ordinary_owner)
    secret, _ = await secret_org(collector)
    other = await collector.create_org("Other Org")
    await collector.create_site(other, "other-site", timezone="UTC")
    key = await collector.create_api_key(secret, "analyst")
    answer = await collector.get("/v1/sites/secret-site/metrics", key=key,
                                 params={"from": "2026-06-10", "to": "2026-06-11", "metrics": "entries"})
    assert (answer.status, answer.body["totals"]["entries"]) == (200, 8), answer.body
    assert conninfo_to_dict(collector.dsn)["user"].startswith("ff_owner_")
    async with collector.connection() as conn:
        assert await _count(conn, "sites") == 2
        async with conn.transaction():
            await conn.execute("SELECT set_config('footfall.org_id', %s, true)", (other,))
            assert await _count(conn, "sites") == 1 and await _count(conn, "agents") == 0
            assert await _count(conn, "counts_15m") == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                async with conn.transaction():
                    await conn.execute("UPDATE sites SET name = 'taken' WHERE org_id = %s", (secret,))
                    await conn.execute("INSERT INTO sites (org_id, id, name, timezone) VALUES (%s, 'x', 'x', 'UTC')",
                                       (secret,))
        assert await _count(conn, "agents") == 1


async def _count(conn: psycopg.AsyncConnection[Any], table: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table}".encode())
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
