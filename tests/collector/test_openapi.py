"""The OpenAPI document is true: it names exactly the application's routes, and a running collector answers within it.

schemathesis generates requests for every documented operation (the signed binary ingest excepted:
its vectors and tests/collector/test_ingest.py cover it) against a real `footfall collector serve`
process, and checks that no answer is a 5xx and that every answer's status, content type and
body are the documented ones. Examples are bounded so the suite stays fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import requests
import schemathesis
from footfall.collector import admin
from footfall.collector.api.openapi import document
from footfall.collector.app import make_app
from footfall.collector.store import AgentContext, Store
from footfall.protocol.signing import generate_key, public_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.collector import CollectorProcess, count_record, transaction_record

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12


def _routes() -> set[tuple[str, str]]:
    app = make_app("postgresql://unused")
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource else {}
        routes.add((route.method, info.get("formatter") or info.get("path", "")))
    return routes


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    documented = {(method.upper(), path) for path, ops in document()["paths"].items() for method in ops}
    routes = _routes()
    assert routes - documented == set(), "routes missing from collector/api/openapi.py"
    assert documented - routes == set(), "documented routes the application does not have"


def test_every_operation_documents_its_errors_and_the_document_loads() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "400" in op["responses"] and "503" in op["responses"], (method, path)
            if op.get("security", None) != []:
                assert "401" in op["responses"], (method, path)
    operations = [result.ok() for result in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in doc["paths"].values())


def _populate(dsn: str) -> tuple[str, str]:
    """An organization with a site, a day of counts and sales, and a fleet_admin key: (site, key)."""

    async def run() -> tuple[str, str]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            org = (await admin.create_organization(conn, "Schema Org")).id
            await admin.create_site(conn, org, "shop", "Europe/Paris")
            await conn.execute(
                "INSERT INTO agents (id, org_id, site_id, public_key) VALUES ('agt_schemaschema', %s, 'shop', %s)",
                (org, public_bytes(generate_key())),
            )
            start = datetime(2026, 6, 10, tzinfo=UTC)
            batch = [count_record(i + 1, start + i * timedelta(minutes=15), entries=i % 5) for i in range(96)]
            batch += [transaction_record(200 + i, start + timedelta(hours=i), currency="EUR") for i in range(5)]
            ctx = AgentContext("agt_schemaschema", org, "shop", ZoneInfo("Europe/Paris"))
            store = Store()
            await store.ensure_for(conn, batch)
            async with conn.transaction():
                await store.write(conn, ctx, batch)
            key = (await admin.create_api_key(conn, org, "fleet_admin")).key
            return "shop", key

    return asyncio.run(run())


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(
    pg_dsn: str, collector_process: Callable[..., CollectorProcess]
) -> None:
    site, key = _populate(pg_dsn)
    process = collector_process("--database-url", pg_dsn)
    schema = schemathesis.openapi.from_url(process.url + "/v1/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    session = requests.Session()
    tested: set[tuple[str, str]] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/ingest":
            continue
        _fuzz(operation, process.url, headers, session)
        tested.add((operation.method.upper(), operation.path))
    documented = {(m.upper(), p) for p, ops in document()["paths"].items() for m in ops}
    # schemathesis leaves out the document it was loaded from.
    assert tested == documented - {("POST", "/v1/ingest"), ("GET", "/v1/openapi.json")}
    # Answers that succeed are checked too, with parameters that make sense.
    valid: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/sites/{site}/metrics", {"from": "2026-06-09", "to": "2026-06-12", "compare": "last_year"}),
        ("GET", "/v1/sites/{site}/metrics", {"from": "2026-06-10", "to": "2026-06-11", "granularity": "15m",
                                              "format": "csv"}),
        # week_start given: the fuzzing above may have changed the organization's.
        ("GET", "/v1/metrics", {"from": "2026-06-01", "to": "2026-06-29", "granularity": "week",
                                "week_start": "monday", "trading_hours": "true"}),
        ("GET", "/v1/sites/{site}/footfall", {"from": "2026-06-10", "to": "2026-06-11", "granularity": "hour"}),
        ("GET", "/v1/sites/{site}/sensors", {}),
        ("GET", "/v1/sites/{site}/outages", {}),
        ("GET", "/v1/sites", {}),
        ("GET", "/v1/organization", {}),
    ]
    for method, path, query in valid:
        operation = schema[path][method]
        case = operation.Case(path_parameters={"site": site} if "{site}" in path else {}, query=query)
        response = case.call(base_url=process.url, headers=headers, session=session)
        assert response.status_code == 200, (path, response.text[:300])
        case.validate_response(response, checks=CHECKS)


def _fuzz(operation: Any, base_url: str, headers: dict[str, str], session: requests.Session) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(), authorized=st.booleans())
    def run(case: Any, authorized: bool) -> None:
        response = case.call(base_url=base_url, headers=headers if authorized else {}, session=session)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Exception as exc:  # name the operation in the failure; pytest shows the rest
        raise AssertionError(f"{operation.method.upper()} {operation.path}: {exc}") from exc

