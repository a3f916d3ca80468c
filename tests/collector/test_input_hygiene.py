"""Hostile requests from outside, each answered with a 4xx naming what was wrong, never a 500 (issue 11).

Every request goes over real HTTP to a real collector on real PostgreSQL; headers holding raw
non-UTF-8 bytes are written byte for byte on a socket (tests/fixtures/raw_http.py). Each test
also checks that the refused request changed nothing. The property-based fuzzing of the same
surfaces is in tests/faults/test_bad_requests.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from footfall.collector import admin
from footfall.collector.errors import AdminError
from footfall.collector.http import error_middleware
from footfall.protocol import fleet as proto
from footfall.protocol.envelope import CONTENT_TYPE as BATCH_TYPE
from footfall.protocol.signing import generate_key, public_key_b64, sign_request

from tests.fixtures.collector import Answer, EnrolledAgent, RunningCollector, count_record
from tests.fixtures.json_routes import BODILESS, NOT_JSON, body_routes, fill
from tests.fixtures.raw_http import raw_request

JSON = "application/json"


async def send(
    collector: RunningCollector, method: str, path: str, body: bytes = b"", *, key: str | None = None,
    agent: EnrolledAgent | None = None, content_type: str = JSON,
) -> Answer:
    """`body` as is, with an API key and/or signed as `agent`."""
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if agent:
        headers.update(sign_request(agent.key, method, path, agent.id, int(time.time()), body).as_dict())
    async with collector.session.request(method, collector.url + path, data=body, headers=headers) as response:
        text = await response.text()
    try:
        return Answer(response.status, json.loads(text), dict(response.headers))
    except ValueError:
        return Answer(response.status, text, dict(response.headers))


async def raw(collector: RunningCollector, method: str, path: str, headers: list[tuple[str, bytes]],
              body: bytes = b"") -> tuple[int, Any]:
    """A request written byte for byte (headers no HTTP client would send)."""
    url = urlsplit(collector.url)
    assert url.hostname and url.port
    return await asyncio.to_thread(raw_request, url.hostname, url.port, method, path, headers, body)


def refused(answer: Answer | tuple[int, Any], status: int, *words: str) -> None:
    """`answer` is a `status` error in the collector's shape whose message names each of `words`."""
    code, body = (answer.status, answer.body) if isinstance(answer, Answer) else answer
    assert code == status, (code, body)
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    for word in words:
        assert word.lower() in body["message"].lower(), (word, body)


class Fleet:
    """An organization with a site, a fleet_admin key, a signing agent and a second agent to act upon."""

    def __init__(self, agent: EnrolledAgent, other: EnrolledAgent, key: str) -> None:
        self.agent, self.other, self.key = agent, other, key

    def values(self) -> dict[str, str]:
        """What fills a route's path parameters."""
        return {"site": self.agent.site, "agent": self.other.id, "sensor": "door", "id": "1", "version": "1"}


@pytest.fixture
async def fleet(collector: RunningCollector) -> Fleet:
    agent = await collector.enroll()
    other = await collector.enroll(org=agent.org, site=agent.site)
    return Fleet(agent, other, await collector.create_api_key(agent.org, "fleet_admin"))


def _nested(depth: int, inner: str = "0") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


async def test_every_json_route_refuses_deep_nesting_surrogates_and_non_finite_numbers(
    collector: RunningCollector, fleet: Fleet,
) -> None:
    """Walks the router: a new route with a JSON body is covered without being named here."""
    hostile = (
        ("nested", _nested(5000)),
        ("nested", b'{"hostname": ' + _nested(65) + b"}"),
        ("surrogate", b'{"hostname": "gw-\\ud800", "name": "x", "note": "\\udfff"}'),
        ("finite", b'{"expires": NaN, "uses": 1}'),
        ("finite", b'{"uses": -Infinity}'),
        ("finite", b'{"uses": 1e400}'),
        ("range", b'{"uses": 1' + b"0" * 30 + b"}"),
        ("utf-8", b'{"name": "caf\xe9"}'),
    )
    routes = [r for r in body_routes(collector.app) if r not in BODILESS and r not in NOT_JSON]
    assert len(routes) >= 10, routes
    for method, template in routes:
        path = fill(template, fleet.values())
        for word, body in hostile:
            answer = await send(collector, method, path, body, key=fleet.key, agent=fleet.agent)
            refused(answer, 400, word)
    deeper = await send(collector, "POST", "/v1/admin/sites", _nested(100_000), key=fleet.key)
    refused(deeper, 400, "over")  # the size bound answers first
    assert await collector.value("SELECT count(*) FROM config_versions") == 0


async def test_lone_surrogates_and_nul_in_strings_are_refused_and_store_nothing(
    collector: RunningCollector, fleet: Fleet,
) -> None:
    org, site = fleet.agent.org, fleet.agent.site
    token = await collector.create_token(site, org)
    for bad in ("gw-\ud800", "\udc80", "gw\x00"):
        enroll = {"token": token, "public_key": public_key_b64(generate_key()), "hostname": bad, "version": "1"}
        refused(await send(collector, "POST", "/v1/agents/enroll", json.dumps(enroll).encode()), 400, "hostname")
        beat = {"v": 1, "sent_at_ms": int(time.time() * 1000), "hostname": bad}
        answer = await send(collector, "POST", proto.HEARTBEAT_PATH, json.dumps(beat).encode(), agent=fleet.agent)
        refused(answer, 400, "hostname")
        push = {"scope": "all", "target": "", "config": "", "note": bad}
        refused(await send(collector, "POST", "/v1/admin/configs", json.dumps(push).encode(), key=fleet.key),
                400, "note")
        create = {"id": "lyon", "timezone": "Europe/Paris", "name": bad}
        refused(await send(collector, "POST", "/v1/admin/sites", json.dumps(create).encode(), key=fleet.key),
                400, "name")
        patch = json.dumps({"name": bad, "tags": [bad]}).encode()
        refused(await send(collector, "PATCH", f"/v1/admin/sites/{site}", patch, key=fleet.key), 400, "name")
    # A valid pair is one character, not a lone surrogate.
    enroll = {"token": token, "public_key": public_key_b64(generate_key()), "hostname": "gw-\U0001f600"}
    assert (await send(collector, "POST", "/v1/agents/enroll", json.dumps(enroll).encode())).status == 201
    assert await collector.value("SELECT count(*) FROM agents WHERE hostname = ''") == 0
    assert await collector.value("SELECT count(*) FROM agents") == 3
    assert await collector.value("SELECT count(*) FROM config_versions") == 0
    assert await collector.value("SELECT count(*) FROM sites") == 1
    assert await collector.value("SELECT name FROM sites") == site
    assert await collector.value("SELECT hostname FROM agents WHERE id = %s", fleet.agent.id) == "gw-test"


async def test_huge_or_non_finite_durations_are_400_naming_the_parameter_and_range(
    collector: RunningCollector, fleet: Fleet,
) -> None:
    huge = "99999999999999999999999"
    for path, name in (
        (f"/v1/admin/agents?stale={huge}", "stale"),
        (f"/v1/admin/agents?offline={huge}", "offline"),
        ("/v1/admin/agents?stale=99999999999d", "stale"),
        (f"/v1/admin/agents/{fleet.other.id}?offline={huge}", "offline"),
        (f"/v1/admin/configs/status?stale={huge}", "stale"),
    ):
        refused(await collector.get(path, key=fleet.key), 400, name, "365d")
    for expires in (1e300, "99999999999d", huge, 2**62, "1e300", -1, 0, "366d"):
        body = json.dumps({"site": fleet.agent.site, "expires": expires}).encode()
        refused(await send(collector, "POST", "/v1/admin/tokens", body, key=fleet.key), 400, "expires", "365d")
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 30):
        body = b'{"site": "%s", "expires": %s}' % (fleet.agent.site.encode(), literal)
        refused(await send(collector, "POST", "/v1/admin/tokens", body, key=fleet.key), 400, "expires", "number")
    assert await collector.value("SELECT count(*) FROM enrollment_tokens") == 2  # the two enrollments'


async def test_non_utf8_authorization_is_401_on_every_keyed_route(collector: RunningCollector, fleet: Fleet) -> None:
    site = fleet.agent.site
    for method, path in (
        ("GET", "/v1/sites"), ("GET", f"/v1/sites/{site}/outages"), ("GET", f"/v1/sites/{site}/metrics"),
        ("GET", "/v1/metrics"), ("GET", "/v1/admin/agents"), ("POST", "/v1/admin/configs"),
        ("PATCH", "/v1/admin/organization"), ("GET", "/v1/organization"),
    ):
        for value in (b"Bearer \xff\xfe", b"Bearer ffk_\xc3\x28", b"\xff " + fleet.key.encode()):
            answer = await raw(collector, method, path, [("Authorization", value), ("Content-Type", JSON.encode())],
                               b"{}")
            refused(answer, 401, "Authorization")
            assert answer[1]["error"] == "invalid_api_key"


async def test_non_utf8_or_oversized_signing_headers_are_401(collector: RunningCollector, fleet: Fleet) -> None:
    agent = fleet.agent
    body = proto.dump({"v": 1, "sent_at_ms": int(time.time() * 1000)})
    for method, path, content_type in (
        ("POST", "/v1/ingest", BATCH_TYPE), ("POST", proto.HEARTBEAT_PATH, JSON), ("GET", "/v1/agents/config/1", JSON),
        ("POST", "/v1/agents/config/1/report", JSON), ("POST", proto.ROTATE_KEY_PATH, JSON),
    ):
        signed = sign_request(agent.key, method, path, agent.id, int(time.time()), body).as_dict()
        for name, value in (
            ("X-Footfall-Agent", agent.id.encode() + b"\xff"), ("X-Footfall-Agent", b"\xe9"),
            ("X-Footfall-Timestamp", b"1\xff"), ("X-Footfall-Timestamp", b"9" * 400),
            ("X-Footfall-Signature", b"\xff" * 88),
        ):
            headers = [(k, v.encode()) for k, v in signed.items() if k != name]
            headers += [(name, value), ("Content-Type", content_type.encode())]
            refused(await raw(collector, method, path, headers, body), 401, name)
    assert await collector.value("SELECT last_seen_at FROM agents WHERE id = %s", agent.id) is None


async def test_cursors_of_the_wrong_type_are_refused(collector: RunningCollector, fleet: Fleet) -> None:
    def cursor(after: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")

    site = fleet.agent.site
    for path, afters in (
        (f"/v1/sites/{site}/outages", (True, False, 2**70, -1, "5", 1.5, [1], None)),
        ("/v1/sites", (True, 5, [site], {"a": 1}, "x" * 1000)),
        (f"/v1/sites/{site}/sensors", (False, 7, ["door"], "d" * 1000)),
    ):
        for after in afters:
            answer = await collector.get(path, key=fleet.key, params={"cursor": cursor(after)})
            refused(answer, 400, "cursor")
            assert answer.body["error"] == "bad_cursor"
    for text in ("%%%", "é" + cursor(1), base64.urlsafe_b64encode(b"[" * 5000).decode()):
        refused(await collector.get("/v1/sites", key=fleet.key, params={"cursor": text}), 400, "cursor")
    # The cursors the collector gives still work.
    assert (await collector.get(f"/v1/sites/{site}/outages", key=fleet.key,
                                params={"cursor": cursor(12)})).status == 200
    assert (await collector.get("/v1/sites", key=fleet.key, params={"cursor": cursor("a")})).status == 200


async def test_numbers_in_paths_and_queries_are_ascii_digits_of_bounded_length(
    collector: RunningCollector, fleet: Fleet,
) -> None:
    site, key = fleet.agent.site, fleet.key
    for value in ("²", "١٠", "1" * 5000):
        refused(await collector.get("/v1/sites", key=key, params={"limit": value}), 400, "limit")
        refused(await collector.get(f"/v1/sites/{site}/metrics", key=key,
                                    params={"from": "2026-03-02", "to": "2026-03-09", "week_start": value}),
                400, "week_start")
    for text in ("%C2%B2", "%D9%A1", "1" * 5000):
        refused(await send(collector, "POST", f"/v1/admin/tokens/{text}/revoke", key=key), 400, "id")
        refused(await send(collector, "GET", f"/v1/admin/configs/{text}", key=key), 400, "version")
    # The signed route checks the signature first: only a path that reads back as signed gets to its version.
    answer = await send(collector, "GET", f"/v1/agents/config/{'1' * 5000}", agent=fleet.agent)
    refused(answer, 400, "version")


async def test_a_trailing_newline_fails_every_validating_pattern(collector: RunningCollector, fleet: Fleet) -> None:
    key, site = fleet.key, fleet.agent.site
    create = {"id": "lyon\n", "timezone": "Europe/Paris"}
    refused(await send(collector, "POST", "/v1/admin/sites", json.dumps(create).encode(), key=key), 400, "site id")
    for settings, word in (
        ({"tags": ["north\n"]}, "tags"),
        ({"day_reset": "04:00\n"}, "day_reset"),
        ({"opening_hours": {"mon": [["09:00\n", "19:00"]]}}, "opening_hours.mon"),
        ({"timezone": "Europe/Paris\n"}, "timezone"),
    ):
        patch = json.dumps(settings).encode()
        refused(await send(collector, "PATCH", f"/v1/admin/sites/{site}", patch, key=key), 400, word)
    async with collector.connection() as conn:
        with pytest.raises(AdminError, match="organization id"):
            await admin.create_organization(conn, "Acme", "acme\n")
        with pytest.raises(AdminError, match="site id"):
            await admin.create_site(conn, fleet.agent.org, "lyon\n", "Europe/Paris")
    assert await collector.value("SELECT count(*) FROM sites") == 1
    assert await collector.value("SELECT tags FROM sites") == []


async def test_dates_at_the_ends_of_the_calendar_are_400(collector: RunningCollector) -> None:
    agent = await collector.enroll(timezone="Asia/Tokyo")
    key = await collector.create_api_key(agent.org, "analyst")
    assert (await collector.upload(agent, [count_record(1, datetime(2026, 3, 8, 1, tzinfo=UTC))])).status == 200
    admin_key = await collector.create_api_key(agent.org, "fleet_admin")
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        patch = json.dumps({"retired_at": moment}).encode()
        answer = await send(collector, "PATCH", f"/v1/admin/sites/{agent.site}/sensors/door", patch, key=admin_key)
        refused(answer, 400, "retired_at", "1970-2099")
    assert await collector.value("SELECT retired_at FROM site_sensors") is None
    for bounds in ({"from": "0001-01-01"}, {"to": "9999-12-31T23:00:00-05:00"}, {"from": "0001-01-01T00:00:00+09:00"}):
        answer = await collector.get(f"/v1/sites/{agent.site}/outages", key=key, params=bounds)
        refused(answer, 400, next(iter(bounds)))
    answer = await collector.get(f"/v1/sites/{agent.site}/metrics", key=key,
                                 params={"from": "0001-01-01", "to": "0001-01-02"})
    refused(answer, 400, "from")
    for bounds in ({"from": "0001-01-01", "to": "0001-01-02"}, {"from": "9999-12-30", "to": "9999-12-31"}):
        refused(await collector.get("/v1/metrics", key=key, params=bounds), 400, "from")


async def test_the_error_middleware_answers_unchecked_input_errors_with_400_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The safety net behind the checks at each source: a parser error no check caught is still the client's
    (400), logged with its traceback so the missing check gets written; a plain ValueError stays a 500 (a bug)."""
    failures: dict[str, Exception] = {
        "unicode": UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"),
        "recursion": RecursionError("maximum recursion depth exceeded"),
        "overflow": OverflowError("date value out of range"),
        "value": ValueError("a bug"),
    }

    async def fail(request: web.Request) -> web.Response:
        raise failures[request.match_info["kind"]]

    app = web.Application(middlewares=[error_middleware(1.0)])
    app.router.add_get("/{kind}", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            answers = {}
            for kind in failures:
                async with session.get(f"http://{host}:{port}/{kind}") as response:
                    answers[kind] = (response.status, await response.json())
    finally:
        await runner.cleanup()
    for kind in ("unicode", "recursion", "overflow"):
        refused(answers[kind], 400, "cannot read")
    assert answers["value"] == (500, {"error": "internal_error",
                                      "message": "the collector failed on this request; it has been logged"})
    unchecked = [r for r in caplog.records if r.getMessage().startswith("unchecked_input")]
    assert len(unchecked) == 3 and all(r.exc_info for r in unchecked)
