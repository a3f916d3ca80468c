"""The analysts' API as an HTTP interface: errors, formats, ETags, the cache, pagination and the admin endpoints."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from footfall.collector.state import STATE

from tests.collector.conftest import eventually
from tests.collector.test_openapi import _routes
from tests.fixtures.collector import CollectorFactory, RunningCollector, count_record, transaction_record

DAY = datetime(2026, 6, 10, tzinfo=UTC)


async def shop(collector: RunningCollector, *, role: str = "analyst") -> tuple[str, str, Any]:
    """An organization with a site `shop` (Paris) with a day of counts; (org, key, agent)."""
    org = await collector.create_org()
    await collector.create_site(org, "shop", timezone="Europe/Paris")
    agent = await collector.enroll(token=await collector.create_token("shop", org))
    batch = [count_record(i + 1, DAY + i * timedelta(minutes=15), entries=2, exits=1) for i in range(96)]
    batch.append(transaction_record(97, DAY + timedelta(hours=10), amount_minor=1250, currency="EUR", items=3))
    assert (await collector.upload(agent, batch)).status == 200
    return org, await collector.create_api_key(org, role), agent


BAD = [
    ({"from": "2026-06-10", "to": "2026-06-11", "granularity": "minute"}, "bad_granularity"),
    ({"from": "2026-06-10", "to": "2026-06-11", "metrics": "entries,footfall"}, "bad_metric"),
    ({"from": "2026-06-10", "to": "2026-06-11", "compare": "yesterday"}, "bad_compare"),
    ({"from": "2026-06-10", "to": "2026-06-11", "trading_hours": "maybe"}, "bad_parameter"),
    ({"from": "2026-06-10", "to": "2026-06-11", "week_start": "someday"}, "bad_parameter"),
    ({"from": "2026-06-10", "to": "2026-06-11", "format": "xml"}, "bad_format"),
    ({"from": "2026-13-01", "to": "2026-06-11"}, "bad_date"),
    ({"from": "soon", "to": "2026-06-11"}, "bad_date"),
    ({"to": "2026-06-11"}, "missing_parameter"),
    ({"from": "", "to": "2026-06-11"}, "bad_date"),
    ({"from": "2026-06-11", "to": "2026-06-10"}, "bad_range"),
    ({"from": "2020-01-01", "to": "2026-06-10"}, "range_too_large"),
    ({"from": "2026-06-01", "to": "2026-06-20", "granularity": "15m"}, "range_too_large"),
    ({"from": "2026-06-10", "to": "2026-06-17", "granularity": "week"}, "unaligned_range"),
    ({"from": "2026-06-02", "to": "2026-07-01", "granularity": "month"}, "unaligned_range"),
    ({"from": "2026-06-10T10:10:00+02:00", "to": "2026-06-11", "granularity": "15m"}, "unaligned_range"),
]


@pytest.mark.parametrize(("params", "code"), BAD, ids=[f"{c}-{i}" for i, (_, c) in enumerate(BAD)])
async def test_every_bad_parameter_is_a_400_with_its_code(
    collector: RunningCollector, params: dict[str, str], code: str
) -> None:
    _, key, _ = await shop(collector)
    for path in ("/v1/sites/shop/metrics", "/v1/metrics"):
        if path == "/v1/metrics" and "T10:10" in params.get("from", ""):
            continue  # a group takes local times without offsets
        answer = await collector.get(path, key=key, params=params)
        assert (answer.status, answer.body["error"]) == (400, code), (path, answer.body)
        assert answer.body["message"]


async def test_unknown_sites_and_groups_are_404(collector: RunningCollector) -> None:
    _, key, _ = await shop(collector)
    span = {"from": "2026-06-10", "to": "2026-06-11"}
    assert (await collector.get("/v1/sites/nowhere/metrics", key=key, params=span)).status == 404
    answer = await collector.get("/v1/metrics", key=key, params={**span, "site": "shop,nowhere"})
    assert (answer.status, answer.body["error"]) == (404, "unknown_site")
    assert "nowhere" in answer.body["message"]
    answer = await collector.get("/v1/metrics", key=key, params={**span, "tag": "no-such-tag"})
    assert (answer.status, answer.body["error"]) == (404, "unknown_site")
    with_offset = {"from": "2026-06-10T00:00:00+02:00", "to": "2026-06-11"}
    offset = await collector.get("/v1/metrics", key=key, params=with_offset)
    assert (offset.status, offset.body["error"]) == (400, "bad_date")


async def test_csv_by_parameter_and_by_accept_header(collector: RunningCollector) -> None:
    _, key, _ = await shop(collector)
    params = {"from": "2026-06-10", "to": "2026-06-12", "metrics": "entries,revenue,conversion"}
    by_param = await collector.get("/v1/sites/shop/metrics", key=key, params={**params, "format": "csv"})
    async with collector.session.get(collector.url + "/v1/sites/shop/metrics", params=params,
                                     headers={"Authorization": f"Bearer {key}", "Accept": "text/csv"}) as response:
        by_accept = await response.text()
        assert response.headers["Content-Type"].startswith("text/csv")
    assert by_param.body == by_accept
    assert by_accept.splitlines() == [
        "start,end,entries,currency,revenue,conversion,completeness,gap,complete",
        # The sensor's first reading was at 02:00 local: expected from then on. Revenue in euros, not cents.
        "2026-06-10T00:00:00+02:00,2026-06-11T00:00:00+02:00,176,EUR,12.50,0.005682,1.0,false,true",
        "2026-06-11T00:00:00+02:00,2026-06-12T00:00:00+02:00,16,EUR,0.00,0.0,0.083333,false,false",
    ]
    async with collector.session.get(collector.url + "/v1/sites/shop/metrics", params=params,
                                     headers={"Authorization": f"Bearer {key}", "Accept": "image/png"}) as response:
        assert response.status == 406
    compared = await collector.get("/v1/sites/shop/metrics", key=key,
                                   params={**params, "format": "csv", "compare": "previous"})
    lines = compared.body.splitlines()
    assert lines[0].startswith("period,start,end") and lines[1].startswith("current,") and lines[3].startswith("comp")


async def test_an_unknown_query_parameter_is_a_400_naming_the_nearest_known_one(collector: RunningCollector) -> None:
    """`sites=` (for `site`) once answered the whole organization's totals; now every gated route refuses a name it
    does not declare, before anything else, and says which it meant."""
    _, key, _ = await shop(collector)
    span = {"from": "2026-06-10", "to": "2026-06-11"}
    typo = await collector.get("/v1/metrics", key=key, params={**span, "sites": "lyon-02"})
    assert (typo.status, typo.body["error"]) == (400, "unknown_parameter"), typo.body
    assert "`sites` (did you mean `site`?)" in typo.body["message"]
    frm = await collector.get("/v1/sites/shop/metrics", key=key, params={"frm": "2026-06-10", "to": "2026-06-11"})
    assert (frm.status, frm.body["error"]) == (400, "unknown_parameter")
    assert "`frm` (did you mean `from`?)" in frm.body["message"]
    twice = await collector.get("/v1/sites/shop/metrics", key=key, params=[("from", "2026-06-10"),
                                                                          ("from", "2026-06-09"), ("to", "2026-06-11")])
    assert (twice.status, "given 2 times" in twice.body["message"]) == (400, True)
    empty = await collector.get("/v1/admin/agents", key=await collector.create_api_key(
        (await collector.rows("SELECT org_id FROM sites"))[0][0], "fleet_admin"), params={"sort": ""})
    assert (empty.status, empty.body["error"]) == (400, "bad_parameter")
    for method, path in _routes():
        if path in ("/v1/ingest", "/v1/agents/enroll", "/v1/openapi.json", "/v1/health", "/metrics", "/healthz",
                    "/readyz"):
            continue
        concrete = path.format(site="shop", agent="agt_00000000", id="1", version="1", sensor="door")
        async with collector.session.request(method, collector.url + concrete, params={"stale_after": "1h"},
                                             headers={"Authorization": f"Bearer {key}"}) as response:
            body = await response.json()
        assert (response.status, body["error"]) == (400, "unknown_parameter"), (method, path, body)
        assert "`stale_after`" in body["message"]


async def test_csv_columns_follow_the_request_not_the_data_and_money_is_in_major_units(
    collector: RunningCollector,
) -> None:
    org = await collector.create_org()
    agents = {}
    for site in ("no-pos", "eur", "jpy", "kwd"):
        await collector.create_site(org, site, timezone="Europe/Paris")
        agents[site] = await collector.enroll(token=await collector.create_token(site, org))
        batch: list[Any] = [count_record(1, DAY + timedelta(hours=8), entries=4)]
        if site != "no-pos":
            amount = {"eur": 6167, "jpy": 6167, "kwd": 6167}[site]
            batch.append(transaction_record(2, DAY + timedelta(hours=9), amount_minor=amount,
                                            currency=site.upper()))
        assert (await collector.upload(agents[site], batch)).status == 200
    key = await collector.create_api_key(org)
    span = {"from": "2026-06-10", "to": "2026-06-11", "format": "csv"}

    async def rows(path: str, **params: str) -> list[dict[str, str]]:
        answer = await collector.get(path, key=key, params={**span, **params})
        assert answer.status == 200, answer.body
        lines = answer.body.splitlines()
        return [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]

    header = ["start", "end", "entries", "exits", "visitors", "occupancy", "transactions", "currency", "revenue",
              "conversion", "atv", "sales_per_visitor", "items_per_transaction", "completeness", "gap", "complete"]
    without = await rows("/v1/sites/no-pos/metrics")
    assert list(without[0]) == header
    assert (without[0]["currency"], without[0]["revenue"], without[0]["atv"]) == ("", "", "")
    assert list((await rows("/v1/sites/eur/metrics"))[0]) == header, "the columns do not come and go with the data"
    for site, revenue in (("eur", "61.67"), ("jpy", "6167"), ("kwd", "6.167")):
        (row,) = await rows(f"/v1/sites/{site}/metrics")
        assert (row["currency"], row["revenue"], row["atv"]) == (site.upper(), revenue, revenue), row
    assert (await rows("/v1/sites/eur/metrics", currency="JPY"))[0]["revenue"] == "0"
    group = await collector.get("/v1/metrics", key=key, params={**span, "site": "eur,jpy"})
    assert (group.status, group.body["error"]) == (400, "currency_required"), group.body
    assert "currency=EUR or currency=JPY" in group.body["message"]
    (row,) = await rows("/v1/metrics", site="eur,jpy", currency="JPY")
    assert (row["currency"], row["revenue"], row["entries"]) == ("JPY", "6167", "8")
    counts_only = await rows("/v1/metrics", site="eur,jpy", metrics="entries")
    assert list(counts_only[0]) == ["start", "end", "fold", "entries", "completeness", "gap", "complete"]
    json_answer = await collector.get("/v1/metrics", key=key, params={**span, "site": "eur,jpy", "format": "json"})
    assert json_answer.body["totals"]["revenue"] == {"EUR": 6167, "JPY": 6167}, "JSON keeps minor units"


async def test_etag_and_cache_control(collector: RunningCollector) -> None:
    _, key, _ = await shop(collector)
    closed = await collector.get("/v1/sites/shop/metrics", key=key, params={"from": "2026-06-10", "to": "2026-06-11"})
    assert closed.headers["Cache-Control"] == "private, max-age=300"
    etag = closed.headers["Etag"]
    headers = {"Authorization": f"Bearer {key}", "If-None-Match": etag}
    async with collector.session.get(collector.url + "/v1/sites/shop/metrics", headers=headers,
                                     params={"from": "2026-06-10", "to": "2026-06-11"}) as response:
        assert response.status == 304
        assert response.headers["ETag"] == etag
    csv = await collector.get("/v1/sites/shop/metrics", key=key,
                              params={"from": "2026-06-10", "to": "2026-06-11", "format": "csv"})
    assert csv.headers["Etag"] != etag
    today = datetime.now(UTC).date()
    running = await collector.get("/v1/sites/shop/metrics", key=key,
                                  params={"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=2))})
    assert running.headers["Cache-Control"] == "private, no-cache"


async def test_the_cache_coalesces_and_ingest_invalidates_it(collector: RunningCollector) -> None:
    _, key, agent = await shop(collector)
    cache = collector.app[STATE].cache

    async def listening() -> bool:
        return cache.enabled

    await eventually(listening, what="the cache listener")
    params = {"from": "2026-06-01", "to": "2026-07-01"}
    answers = await asyncio.gather(*(collector.get("/v1/sites/shop/metrics", key=key, params=params)
                                     for _ in range(6)))
    assert {a.body["totals"]["entries"] for a in answers} == {192}
    assert cache.stats.misses == 1 and cache.stats.coalesced + cache.stats.hits == 5
    late = DAY + timedelta(days=3)
    assert (await collector.upload(agent, [count_record(200, late, entries=5)])).status == 200

    async def updated() -> bool:
        answer = await collector.get("/v1/sites/shop/metrics", key=key, params=params)
        return bool(answer.body["totals"]["entries"] == 197)

    await eventually(updated, what="the cached answer to be dropped by ingest")
    # A batch outside the range leaves the entry alone.
    hits = cache.stats.hits
    assert (await collector.upload(agent, [count_record(201, DAY + timedelta(days=60))])).status == 200
    await eventually(lambda: _hit(collector, key, params, hits), what="a cache hit")


async def _hit(collector: RunningCollector, key: str, params: dict[str, str], before: int) -> bool:
    await collector.get("/v1/sites/shop/metrics", key=key, params=params)
    return bool(collector.app[STATE].cache.stats.hits > before)


async def test_ingest_through_one_collector_invalidates_the_cache_of_another(
    collector_factory: CollectorFactory,
) -> None:
    first, second = await collector_factory(), await collector_factory()
    _, key, agent = await shop(first)

    async def listening() -> bool:
        return first.app[STATE].cache.enabled and second.app[STATE].cache.enabled

    await eventually(listening, what="both cache listeners")
    params = {"from": "2026-06-10", "to": "2026-06-11", "metrics": "entries"}
    assert (await second.get("/v1/sites/shop/metrics", key=key, params=params)).body["totals"]["entries"] == 176
    assert (await second.get("/v1/sites/shop/metrics", key=key, params=params)).body["totals"]["entries"] == 176
    assert second.app[STATE].cache.stats.hits == 1
    assert (await first.upload(agent, [count_record(300, DAY + timedelta(hours=12), entries=10)])).status == 200

    async def seen() -> bool:
        answer = await second.get("/v1/sites/shop/metrics", key=key, params=params)
        return bool(answer.body["totals"]["entries"] == 186)

    await eventually(seen, what="the other collector to drop its cached answer")


async def test_lists_are_paginated_with_cursors(collector: RunningCollector) -> None:
    org = await collector.create_org()
    for i in range(7):
        await collector.create_site(org, f"s{i}", timezone="UTC")
    key = await collector.create_api_key(org)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        answer = await collector.get("/v1/sites", key=key, params=params)
        assert answer.status == 200, answer.body
        seen += [s["id"] for s in answer.body["sites"]]
        cursor = answer.body["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == [f"s{i}" for i in range(7)] and pages == 3
    bad = await collector.get("/v1/sites", key=key, params={"cursor": "garbage!"})
    assert (bad.status, bad.body["error"]) == (400, "bad_cursor")
    assert (await collector.get("/v1/sites", key=key, params={"limit": "0"})).body["error"] == "bad_parameter"


async def test_fleet_admins_manage_sites_and_their_settings(collector: RunningCollector) -> None:
    org, admin_key, _ = await shop(collector, role="fleet_admin")
    analyst = await collector.create_api_key(org, "analyst")
    created = await collector.post_json("/v1/admin/sites", {
        "id": "lyon", "timezone": "Europe/Paris", "visitors": "mean", "tags": ["region:south"],
        "opening_hours": {"mon": [["09:00", "19:00"]]}, "hours_exceptions": {"2026-12-25": []},
    }, key=admin_key)
    assert created.status == 201, created.body
    assert (created.body["visitors"], created.body["tags"], created.body["day_reset"]) == ("mean", ["region:south"],
                                                                                            "04:00")
    again = await collector.post_json("/v1/admin/sites", {"id": "lyon", "timezone": "UTC"}, key=admin_key)
    assert (again.status, again.body["error"]) == (409, "site_exists")
    refused = await collector.post_json("/v1/admin/sites", {"id": "x", "timezone": "Europe/Pariss"}, key=admin_key)
    assert (refused.status, refused.body["error"]) == (400, "bad_settings")
    assert "Europe/Paris" in refused.body["message"]
    assert (await collector.post_json("/v1/admin/sites", {"id": "x", "timezone": "UTC"}, key=analyst)).status == 403

    async with collector.session.patch(collector.url + "/v1/admin/sites/shop", headers={
        "Authorization": f"Bearer {admin_key}"}, json={"visitors": "both", "day_reset": "25:00",
                                                        "opening_hours": {"mon": [["19:00", "09:00"]]}}) as response:
        body = await response.json()
        assert response.status == 400 and body["error"] == "bad_settings"
        for field in ("visitors", "day_reset", "opening_hours.mon"):
            assert field in body["message"]
    async with collector.session.patch(collector.url + "/v1/admin/sites/shop", headers={
            "Authorization": f"Bearer {admin_key}"}, json={"timezone": "Asia/Tokyo"}) as response:
        assert response.status == 409 and (await response.json())["error"] == "timezone_locked"
    async with collector.session.patch(collector.url + "/v1/admin/sites/shop", headers={
            "Authorization": f"Bearer {admin_key}"}, json={"expected_sensors": ["door", "side-door"]}) as response:
        assert response.status == 200
    day = await collector.get("/v1/sites/shop/metrics", key=analyst, params={"from": "2026-06-10", "to": "2026-06-11"})
    # Configured sensors are expected all day: door reported 88 of 96 quarters, side-door none.
    assert day.body["totals"]["completeness"] == round(88 / 192, 6)
    async with collector.session.patch(collector.url + "/v1/admin/sites/shop/sensors/door", headers={
            "Authorization": f"Bearer {admin_key}"}, json={"retired_at": "now"}) as response:
        assert response.status == 200 and (await response.json())["retired_at"] is not None
    async with collector.session.patch(collector.url + "/v1/admin/organization", headers={
            "Authorization": f"Bearer {admin_key}"}, json={"week_start": "sunday"}) as response:
        assert (await response.json())["week_start"] == "sunday"
    week = await collector.get("/v1/sites/shop/metrics", key=analyst,
                               params={"from": "2026-06-07", "to": "2026-06-14", "granularity": "week"})
    assert week.status == 200 and week.body["buckets"][0]["start"].startswith("2026-06-07")
    sensors = await collector.get("/v1/sites/shop/sensors", key=analyst)
    assert [(s["name"], s["expected"]) for s in sensors.body["sensors"]] == [("door", True)]
    assert sensors.body["expected_sensors"] == ["door", "side-door"]
    assert date.fromisoformat(sensors.body["sensors"][0]["reporting_since"][:10]) == DAY.date()
