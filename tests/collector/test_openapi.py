"""The OpenAPI document is true: it names exactly the application's routes, and a running collector answers within it.

schemathesis (`st run`, every check) generates requests for every documented operation (the signed
binary ingest excepted: its vectors and tests/collector/test_ingest.py cover it) against a real
`footfall collector serve` process. It checks that no answer is a 5xx, that every answer's status,
content type, headers and body are the documented ones, that a request outside the document is
refused and one inside it accepted (positive_data_acceptance: the document is no looser than the
server), unsupported methods, authentication. An operation may refuse a schema-valid request only
with a code it lists under `x-rule-errors` (tests/collector/schemathesis_hooks.py). Examples are
bounded so that the run takes well under a minute.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import requests
import schemathesis
from footfall.collector import admin
from footfall.collector.api.openapi import document
from footfall.collector.app import make_app
from footfall.collector.store import AgentContext, Store
from footfall.collector.tenancy import gate_of
from footfall.protocol.signing import generate_key, public_bytes
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.collector import CollectorProcess, count_record, transaction_record

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 10
ROOT = Path(__file__).resolve().parents[2]


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


def test_each_route_documents_exactly_the_query_its_gate_checks() -> None:
    """The document's query parameters are the gate's own declarations (collector/api/params.py), route by route."""
    doc = document()
    app = make_app("postgresql://unused")
    checked = 0
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        operation = doc["paths"][info.get("formatter") or info.get("path", "")][route.method.lower()]
        documented = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        gate = gate_of(route.handler)
        if gate is None:
            assert documented == [], (route.method, info)
            continue
        assert documented == [p.document() for p in gate.query], (route.method, info)
        checked += 1
    assert checked >= 25


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


def test_schemathesis_with_every_check_finds_the_document_and_the_server_agree(
    pg_dsn: str, collector_process: Callable[..., CollectorProcess]
) -> None:
    site, key = _populate(pg_dsn)
    process = collector_process("--database-url", pg_dsn)
    doc = document()
    # schemathesis leaves out the document it was loaded from; ingest is excluded above.
    operations = sum(len(ops) for ops in doc["paths"].values()) - 1
    with tempfile.TemporaryDirectory(prefix="ff-st-") as scratch:
        config = Path(scratch, "schemathesis.toml")
        config.write_text(_config(doc))
        result = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run",
             process.url + "/v1/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES),
             "--exclude-path", "/v1/ingest", "--header", f"Authorization: Bearer {key}", "--workers", "1",
             "--no-color", "--report-dir", scratch],
            check=False, capture_output=True, text=True, timeout=240, cwd=scratch,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.collector.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert re.search(rf"Selected: {operations - 1}/{operations}\s+Tested: {operations - 1}\b", output), output[-3000:]
    _valid_answers(process.url, site, key)


def _config(doc: dict[str, Any]) -> str:
    """schemathesis.toml: operations with `x-rule-errors` may answer 400 to schema-valid data (the hook checks the
    code); every other operation keeps positive_data_acceptance's defaults."""
    allowed = '["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]'
    sections = []
    for path, ops in doc["paths"].items():
        for method, operation in ops.items():
            if operation.get("x-rule-errors"):
                sections.append(f'[[operations]]\ninclude-name = "{method.upper()} {path}"\n'
                                f"checks.positive_data_acceptance.expected-statuses = {allowed}\n")
    return "\n".join(sections)


def _valid_answers(url: str, site: str, key: str) -> None:
    """Answers that succeed are checked too, with parameters that make sense."""
    schema = schemathesis.openapi.from_url(url + "/v1/openapi.json")
    headers = {"Authorization": f"Bearer {key}"}
    session = requests.Session()
    valid: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/sites/{site}/metrics", {"from": "2026-06-09", "to": "2026-06-12", "compare": "last_year"}),
        ("GET", "/v1/sites/{site}/metrics", {"from": "2026-06-10", "to": "2026-06-11", "granularity": "15m",
                                              "format": "csv"}),
        # week_start given: the fuzzing above may have changed the organization's.
        ("GET", "/v1/metrics", {"from": "2026-06-01", "to": "2026-06-29", "granularity": "week",
                                "week_start": "monday", "trading_hours": "true", "currency": "EUR"}),
        ("GET", "/v1/sites/{site}/footfall", {"from": "2026-06-10", "to": "2026-06-11", "granularity": "hour"}),
        ("GET", "/v1/sites/{site}/sensors", {}),
        ("GET", "/v1/sites/{site}/outages", {}),
        ("GET", "/v1/sites", {}),
        ("GET", "/v1/organization", {}),
    ]
    for method, path, query in valid:
        operation = schema[path][method]
        case = operation.Case(path_parameters={"site": site} if "{site}" in path else {}, query=query)
        response = case.call(base_url=url, headers=headers, session=session)
        assert response.status_code == 200, (path, response.text[:300])
        case.validate_response(response, checks=CHECKS)
