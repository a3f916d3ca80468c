"""Hostile JSON bodies, header bytes and query values on every route of a real collector: never a 5xx.

Hypothesis generates the input; a real collector (on its own loop thread, tests/fixtures/
threaded_collector.py) on real PostgreSQL answers over loopback HTTP. The routes come from
walking the app's router (tests/fixtures/json_routes.py), the field names from the OpenAPI
document and the fleet messages, so a route or a field added later is fuzzed without being
named here. Every request carries a valid fleet_admin key and a valid agent signature, so
the body really reaches each route's parser. Requests are written byte for byte on a socket
(tests/fixtures/raw_http.py): the headers carry raw bytes no HTTP client would send.

The property: no answer is a 5xx, and every 4xx has the `{"error", "message"}` shape.
Bytes that break HTTP framing itself (CR, LF, NUL and other control bytes in a header) are
left out: aiohttp's parser answers those before any route or middleware runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import fields
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from footfall.collector import admin
from footfall.collector.api import openapi
from footfall.collector.app import make_app
from footfall.protocol import fleet as proto
from footfall.protocol.signing import sign_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.json_routes import Route, body_routes, fill, routes
from tests.fixtures.raw_http import raw_request
from tests.fixtures.threaded_collector import ThreadedCollector

# Modest counts: the point is every route and every kind of hostility, quickly (a few seconds each).
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# Routes are the same for every collector: walked once on an app that is never started.
_APP = make_app("postgresql://unused")
ALL_ROUTES, BODY_ROUTES = routes(_APP), body_routes(_APP)
HEADERS = ("Authorization", "X-Footfall-Agent", "X-Footfall-Timestamp", "X-Footfall-Signature",
           proto.HEADER_CLOCK_OFFSET, "Content-Type", "Accept", "If-None-Match", "Cache-Control")


def _field_names() -> list[str]:
    """Every property name of the OpenAPI document's schemas, and every field of the fleet messages."""
    names: set[str] = {"v"}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi.document())
    for message in (proto.Heartbeat, proto.SourceInfo, proto.BufferState, proto.UploadInfo, proto.ClockInfo,
                    proto.ConfigInfo, proto.ConfigReport, proto.KeyRotation):
        names.update(f.name for f in fields(message))
    return sorted(names)


FIELDS = _field_names()
# Strings PostgreSQL cannot store, lookalike digits, a trailing newline, a valid astral character.
nasty_text = st.sampled_from(["\ud800", "x\udfff", "\udc80\ud800", "a\x00b", "EUR\n", "04:00\n", "²", "١٠",
                              "\U0001f600", "now", "99999999999d", "1e300", "", " "])
texts = st.text(max_size=12) | nasty_text
leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
          | st.floats(allow_nan=True, allow_infinity=True) | texts)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | texts, inner, max_size=4),
    max_leaves=12,
)
numbers = st.sampled_from([b"1e400", b"-1e999", b"1" + b"0" * 30, b"9" * 5000, b"NaN", b"-Infinity", b"1E-400"])


def _deep(depth: int, bracket: str) -> bytes:
    if bracket == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"0" + b"}" * depth


bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(lambda v: json.dumps(v).encode()),
    values.map(lambda v: json.dumps(v).encode()),
    st.builds(_deep, st.integers(20, 3000), st.sampled_from("[{")),
    st.builds(lambda name, number: b'{"%s": %s}' % (name.encode(), number), st.sampled_from(FIELDS), numbers),
    st.binary(max_size=64),
)
# Header bytes that survive HTTP framing: printable ASCII, tab, and every byte above 0x7f.
header_bytes = st.binary(max_size=40).map(lambda b: bytes(c if c >= 0x20 and c != 0x7F else 0x09 for c in b))
query_values = texts | st.sampled_from(["99999999999999999999999", "1" * 1000, "0001-01-01", "9999-12-31T23:00Z",
                                        "eyJhZnRlciI6IHRydWV9", "W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW10=", "-1"])
QUERY_NAMES = sorted({"stale", "offline", "limit", "cursor", "from", "to", "granularity", "metrics", "trading_hours",
                      "compare", "week_start", "format", "site", "tag", "state", "sort", "desc", "version"})


class Target:
    """The collector and what fills a request: a fleet_admin key, the signing agent, path values."""

    def __init__(self, collector: ThreadedCollector, key: str) -> None:
        self.collector, self.key = collector, key
        # {agent} names no agent: a bodiless admin route (revoke) must not take the signing agent away.
        self.values = {"site": collector.tenant.site, "agent": "agt_nobody", "sensor": "door", "id": "1",
                       "version": "1"}

    def headers(self, method: str, path: str, body: bytes) -> dict[str, bytes]:
        """Valid headers for this request: the key, the agent's signature over `body`, JSON."""
        signed = sign_request(self.collector.key, method, path, self.collector.agent_id, int(time.time()), body)
        return {"Authorization": f"Bearer {self.key}".encode(), "Content-Type": b"application/json",
                **{k: v.encode() for k, v in signed.as_dict().items()}}

    def send(self, method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> tuple[int, Any]:
        return raw_request(self.collector.host, self.collector.port, method, path, list(headers.items()), body)


async def _fleet_key(dsn: str, org: str) -> str:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return (await admin.create_api_key(conn, org, "fleet_admin")).key


@pytest.fixture
def target(threaded_collector: ThreadedCollector) -> Target:
    return Target(threaded_collector, asyncio.run(_fleet_key(threaded_collector.dsn, threaded_collector.tenant.org)))


def _expect_no_5xx(route: Route, status: int, answer: Any) -> None:
    assert status < 500, (route, status, answer)
    if status >= 400:
        assert isinstance(answer, dict) and set(answer) == {"error", "message"} and answer["message"], (route, answer)


def test_routes_are_found_by_walking_the_router() -> None:
    assert ("POST", "/v1/agents/enroll") in BODY_ROUTES and ("PATCH", "/v1/admin/sites/{site}") in BODY_ROUTES
    assert ("POST", proto.HEARTBEAT_PATH) in BODY_ROUTES and ("GET", "/v1/sites/{site}/outages") in ALL_ROUTES
    assert {"hostname", "expires", "opening_hours", "note", "new_public_key"} <= set(FIELDS)


def test_any_json_body_on_any_route_gets_no_5xx(target: Target) -> None:
    @FUZZ
    @given(route=st.sampled_from(BODY_ROUTES), body=bodies)
    def post(route: Route, body: bytes) -> None:
        method, template = route
        path = fill(template, target.values)
        status, answer = target.send(method, path, target.headers(method, path, body), body)
        _expect_no_5xx(route, status, answer)

    post()


def test_any_header_bytes_on_any_route_get_no_5xx(target: Target) -> None:
    @FUZZ
    @given(
        route=st.sampled_from(ALL_ROUTES),
        changed=st.dictionaries(st.sampled_from(HEADERS), header_bytes, min_size=1, max_size=4),
        keep_valid_prefix=st.booleans(),
    )
    def send(route: Route, changed: dict[str, bytes], keep_valid_prefix: bool) -> None:
        method, template = route
        path = fill(template, target.values)
        body = proto.dump({"v": 1, "sent_at_ms": int(time.time() * 1000)}) if method != "GET" else b""
        headers = target.headers(method, path, body)
        for name, value in changed.items():
            # Either the raw bytes alone, or a valid value with them appended (past the prefix checks).
            headers[name] = headers.get(name, b"") + value if keep_valid_prefix else value
        status, answer = target.send(method, path, headers, body)
        _expect_no_5xx(route, status, answer)

    send()


def test_any_query_values_on_any_route_get_no_5xx(target: Target) -> None:
    @FUZZ
    @given(
        route=st.sampled_from([r for r in ALL_ROUTES if r[0] == "GET"]),
        query=st.dictionaries(st.sampled_from(QUERY_NAMES), query_values, min_size=1, max_size=4),
    )
    def get(route: Route, query: dict[str, str]) -> None:
        method, template = route
        path = fill(template, target.values)
        encoded = urlencode(query, encoding="utf-8", errors="surrogatepass")
        status, answer = target.send(method, f"{path}?{encoded}", target.headers(method, path, b""))
        _expect_no_5xx(route, status, answer)

    get()
