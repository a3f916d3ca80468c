"""The metrics API against plain-Python references over generated readings (tests/collector/reference.py).

DST days, 30- and 45-minute zones, a group of sites in three zones, refunds and two currencies,
opening hours, occupancy (sensors and the estimated balance), comparisons, and a site with an
outage whose completeness falls below 1.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from footfall.collector import sites as site_settings

from tests.collector.reference import (
    QUARTER,
    Store,
    balance_by_quarter,
    check,
    day_start,
    generate,
    key_of,
    records,
    reference,
    upload,
)
from tests.fixtures.collector import RunningCollector, count_record, event_record, ms

ONE = timedelta(days=1)


async def make_site(collector: RunningCollector, org: str, store: Store, **settings: Any) -> None:
    """Create the store's site with settings, enroll an agent and upload its readings."""
    await collector.create_site(org, store.site, timezone=store.zone.key)
    if settings or store.visitors != "entries":
        async with collector.connection() as conn:
            await site_settings.update_site(conn, org, store.site, {"visitors": store.visitors, **settings})
    agent = await collector.enroll(token=await collector.create_token(store.site, org))
    batch = records(store)
    await upload(collector, agent, batch)
    if store.events:
        seq = batch[-1].seq + 1 if batch else 1
        renumbered = [type(e)(e.sensor, e.at_ms, e.kind, e.detail, e.lost_first, e.lost_last, seq=seq + i)
                      for i, e in enumerate(store.events)]
        await upload(collector, agent, renumbered)


async def metrics(collector: RunningCollector, key: str, path: str, **params: str) -> dict[str, Any]:
    answer = await collector.get(path, key=key, params=params)
    assert answer.status == 200, answer.body
    return answer.body


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "Asia/Kathmandu"])
async def test_one_site_matches_the_reference_on_dst_and_odd_offset_days(
    collector: RunningCollector, zone: str
) -> None:
    org = await collector.create_org()
    store = Store("store", ZoneInfo(zone), visitors="mean")
    spring, fall = date(2026, 3, 8), date(2026, 11, 1)  # New York's changes; ordinary days elsewhere
    generate(store, spring - ONE, spring + ONE, seed=1, currencies=("EUR", "USD"))
    generate(store, fall - ONE, fall + ONE, seed=2, currencies=("EUR", "USD"))
    await make_site(collector, org, store)
    key = await collector.create_api_key(org)
    path = "/v1/sites/store/metrics"
    for day in (spring, fall):
        for granularity in ("15m", "hour"):
            answer = await metrics(collector, key, path, **{"from": str(day), "to": str(day + ONE),
                                                            "granularity": granularity})
            check(answer, reference([store], day, day + ONE, granularity), store.zone, granularity)
        answer = await metrics(collector, key, path, **{"from": str(day - ONE), "to": str(day + 2 * ONE)})
        check(answer, reference([store], day - ONE, day + 2 * ONE, "day"), store.zone, "day")
        assert answer["currencies"] == ["EUR", "USD"]
    hours = await metrics(collector, key, path, **{"from": str(spring), "to": str(spring + ONE), "granularity": "hour"})
    assert len(hours["buckets"]) == (23 if zone == "America/New_York" else 24)
    if zone == "Asia/Kathmandu":
        assert hours["buckets"][1]["start"] == f"{spring}T01:00:00+05:45"
    fall_hours = await metrics(collector, key, path,
                               **{"from": str(fall), "to": str(fall + ONE), "granularity": "hour"})
    assert len(fall_hours["buckets"]) == (25 if zone == "America/New_York" else 24)
    assert all(b["completeness"] == 1 and b["complete"] for b in fall_hours["buckets"])


async def test_a_group_in_three_zones_adds_up_each_sites_local_periods(collector: RunningCollector) -> None:
    org = await collector.create_org()
    stores = [
        Store("paris", ZoneInfo("Europe/Paris")),
        Store("new-york", ZoneInfo("America/New_York"), visitors="exits"),
        Store("kathmandu", ZoneInfo("Asia/Kathmandu"), visitors="mean"),
    ]
    first, last = date(2026, 10, 24), date(2026, 11, 2)  # Paris falls back on 10-25, New York on 11-01
    for i, store in enumerate(stores):
        generate(store, first, last, seed=10 + i, currencies=("EUR", "USD"))
        await make_site(collector, org, store, tags=["region:all", f"zone:{i}"])
    await collector.create_site(org, "elsewhere", timezone="Asia/Tokyo")  # not tagged: not in the group
    key = await collector.create_api_key(org)
    days = await metrics(collector, key, "/v1/metrics", tag="region:all", **{"from": str(first), "to": str(last + ONE)})
    assert days["sites"] == ["kathmandu", "new-york", "paris"]
    check(days, reference(stores, first, last + ONE, "day"), None, "day")
    named = await metrics(collector, key, "/v1/metrics", site="paris,new-york,kathmandu",
                          **{"from": "2026-11-01", "to": "2026-11-02", "granularity": "hour"})
    expected = reference(stores, date(2026, 11, 1), date(2026, 11, 2), "hour")
    check(named, expected, None, "hour")
    # New York repeats 01:00: the group has both occurrences, the second with fold 1.
    assert [(b["start"], b["fold"]) for b in named["buckets"][1:3]] == [
        ("2026-11-01T01:00:00", 0), ("2026-11-01T01:00:00", 1)]
    whole = await metrics(collector, key, "/v1/metrics", **{"from": str(first), "to": str(last + ONE)})
    assert whole["sites"] == ["elsewhere", "kathmandu", "new-york", "paris"]
    assert whole["totals"]["entries"] == days["totals"]["entries"]
    weeks = await metrics(collector, key, "/v1/metrics", tag="region:all", granularity="week",
                          **{"from": "2026-10-19", "to": "2026-11-02"})
    check(weeks, reference(stores, date(2026, 10, 19), date(2026, 11, 2), "week"), None, "week")


async def test_refunds_voids_and_two_currencies_never_mix(collector: RunningCollector) -> None:
    org = await collector.create_org()
    store = Store("shop", ZoneInfo("Europe/Paris"))
    generate(store, date(2026, 6, 1), date(2026, 6, 30), seed=3, currencies=("EUR", "CHF"), sales_per_day=40)
    await make_site(collector, org, store)
    key = await collector.create_api_key(org)
    for granularity, first, end in (("day", "2026-06-01", "2026-07-01"), ("week", "2026-06-01", "2026-06-29"),
                                    ("month", "2026-06-01", "2026-07-01")):
        answer = await metrics(collector, key, "/v1/sites/shop/metrics", granularity=granularity,
                               **{"from": first, "to": end})
        check(answer, reference([store], date.fromisoformat(first), date.fromisoformat(end), granularity),
              store.zone, granularity)
    month = answer["totals"]
    sold = {c: sum(a for _, k, a, cur, _ in store.sales if cur == c and k == "sale") for c in ("EUR", "CHF")}
    taken_back = {c: sum(a for _, k, a, cur, _ in store.sales if cur == c and k != "sale") for c in ("EUR", "CHF")}
    assert month["revenue"] == {c: sold[c] - taken_back[c] for c in ("CHF", "EUR")}
    sundays = await metrics(collector, key, "/v1/sites/shop/metrics", granularity="week", week_start="sunday",
                            **{"from": "2026-05-31", "to": "2026-06-28"})
    expected = reference([store], date(2026, 5, 31), date(2026, 6, 28), "week", week_start=7)
    check(sundays, expected, store.zone, "week", 7)


async def test_trading_hours_count_only_open_quarters(collector: RunningCollector) -> None:
    org = await collector.create_org()
    store = Store("mall", ZoneInfo("America/New_York"))
    store.hours = {d: [(time(9), time(12)), (time(13), time(21))] for d in range(6)}  # closed on Sundays
    store.exceptions = {date(2026, 3, 9): [], date(2026, 3, 10): [(time(10), time(14))]}
    generate(store, date(2026, 3, 6), date(2026, 3, 12), seed=4)
    weekly = {name: [["09:00", "12:00"], ["13:00", "21:00"]] for name in ("mon", "tue", "wed", "thu", "fri", "sat")}
    await make_site(collector, org, store, opening_hours=weekly,
                    hours_exceptions={"2026-03-09": [], "2026-03-10": [["10:00", "14:00"]]})
    key = await collector.create_api_key(org)
    span = {"from": "2026-03-06", "to": "2026-03-13", "trading_hours": "true"}
    for granularity in ("day", "hour"):
        answer = await metrics(collector, key, "/v1/sites/mall/metrics", granularity=granularity, **span)
        check(answer, reference([store], date(2026, 3, 6), date(2026, 3, 13), granularity, trading_only=True),
              store.zone, granularity)
    days = await metrics(collector, key, "/v1/sites/mall/metrics", **span)
    by_day = {b["start"][:10]: b for b in days["buckets"]}
    assert by_day["2026-03-08"]["entries"] == 0 and by_day["2026-03-08"]["completeness"] is None  # Sunday
    assert by_day["2026-03-09"]["entries"] == 0  # the exception closes Monday
    everything = await metrics(collector, key, "/v1/sites/mall/metrics", **{"from": "2026-03-06", "to": "2026-03-13"})
    assert everything["totals"]["entries"] > days["totals"]["entries"] > 0


async def test_day_rollups_and_quarters_give_the_same_answers(collector: RunningCollector) -> None:
    org = await collector.create_org()
    store = Store("twin", ZoneInfo("Europe/Paris"), visitors="mean")
    generate(store, date(2026, 3, 27), date(2026, 3, 31), seed=5, currencies=("EUR", "GBP"))
    always = {name: [["00:00", "24:00"]] for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    await make_site(collector, org, store, opening_hours=always)
    key = await collector.create_api_key(org)
    span = {"from": "2026-03-27", "to": "2026-04-01"}
    from_days = await metrics(collector, key, "/v1/sites/twin/metrics", **span)
    from_quarters = await metrics(collector, key, "/v1/sites/twin/metrics", trading_hours="true", **span)
    assert from_days["buckets"] == from_quarters["buckets"]
    assert from_days["totals"] == from_quarters["totals"]


async def test_an_outage_lowers_completeness_and_flags_its_buckets(collector: RunningCollector) -> None:
    org = await collector.create_org()
    store = Store("broken", ZoneInfo("Europe/Berlin"))
    day = date(2026, 5, 12)
    start = day_start(day, store.zone)
    # door-b is silent from 10:00 to 12:00 local; the agent also lost seqs it reports in a gap event.
    silent = {("door-b", start + timedelta(hours=10) + i * QUARTER) for i in range(8)}
    generate(store, day, day, seed=6, skip=silent)
    await make_site(collector, org, store)
    agent_answer = await collector.get("/v1/sites/broken/sensors", key=await collector.create_api_key(org))
    assert [s["name"] for s in agent_answer.body["sensors"]] == ["door-a", "door-b"]
    offline_at, online_at = start + timedelta(hours=15, minutes=5), start + timedelta(hours=16, minutes=40)
    key = await collector.create_api_key(org)
    agent = await collector.enroll(token=await collector.create_token("broken", org))
    await upload(collector, agent, [
        event_record(1, offline_at, kind="offline", sensor="door-a"),
        event_record(2, online_at, kind="online", sensor="door-a"),
    ])
    hours = await metrics(collector, key, "/v1/sites/broken/metrics", granularity="hour",
                          **{"from": str(day), "to": str(day + ONE)})
    expected = reference([store], day, day + ONE, "hour", windows={"broken": [(offline_at, online_at)]})
    check(hours, expected, store.zone, "hour")
    by_hour = {int(b["start"][11:13]): b for b in hours["buckets"]}
    assert by_hour[10]["completeness"] == 0.5 and not by_hour[10]["complete"]
    assert by_hour[9]["completeness"] == 1 and by_hour[9]["complete"]
    assert [h for h, b in by_hour.items() if b["gap"]] == [15, 16]
    whole_day = await metrics(collector, key, "/v1/sites/broken/metrics", **{"from": str(day), "to": str(day + ONE)})
    assert whole_day["totals"]["completeness"] == round(1 - 8 / (2 * 96), 6)
    assert whole_day["buckets"][0]["gap"] is True
    outages = (await collector.get("/v1/sites/broken/outages", key=key)).body["outages"]
    assert [(o["kind"], o["sensor"], o["starts_at"], o["ends_at"]) for o in outages] == [
        ("offline", "door-a", offline_at.isoformat(), online_at.isoformat())]


async def test_a_buffer_gap_covers_the_records_around_the_lost_seqs(collector: RunningCollector) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org, "lossy", timezone="UTC")
    agent = await collector.enroll(token=await collector.create_token(site, org))
    t0 = datetime(2026, 7, 1, 8, tzinfo=UTC)
    await upload(collector, agent, [count_record(1, t0), count_record(2, t0 + QUARTER)])
    # Seqs 3-6 were dropped by the agent's buffer; 7 survived; the gap event comes last.
    await upload(collector, agent, [
        count_record(7, t0 + 6 * QUARTER),
        type(event_record(8, t0))("agent", ms(t0 + 7 * QUARTER), "gap", "buffer full", 3, 6, seq=8),
    ])
    key = await collector.create_api_key(org)
    (outage,) = (await collector.get(f"/v1/sites/{site}/outages", key=key)).body["outages"]
    assert (outage["kind"], outage["lost_first"], outage["lost_last"]) == ("gap", 3, 6)
    assert (outage["starts_at"], outage["ends_at"]) == ((t0 + 2 * QUARTER).isoformat(), (t0 + 6 * QUARTER).isoformat())
    answer = await metrics(collector, key, f"/v1/sites/{site}/metrics", granularity="15m",
                           **{"from": "2026-07-01T08:00:00Z", "to": "2026-07-01T10:00:00Z"})
    assert [b["gap"] for b in answer["buckets"]] == [False, False, True, True, True, True, False, False]


async def test_occupancy_from_sensors_and_from_the_balance(collector: RunningCollector) -> None:
    org = await collector.create_org()
    counted = Store("counted", ZoneInfo("Europe/Paris"))
    generate(counted, date(2026, 10, 24), date(2026, 10, 26), seed=7, sales_per_day=0)
    await make_site(collector, org, counted, day_reset="05:00")
    counted.reset = time(5)
    sensed = Store("sensed", ZoneInfo("Asia/Kolkata"), sensors=("occ-1",))
    moment = day_start(date(2026, 10, 25), sensed.zone)
    for i in range(96 * 2):
        sensed.occupancy.append(("floor", moment + i * QUARTER + timedelta(minutes=7), (i * 37) % 50))
    await make_site(collector, org, sensed)
    key = await collector.create_api_key(org)
    first, end = date(2026, 10, 24), date(2026, 10, 27)
    levels = balance_by_quarter(counted, day_start(first, counted.zone), day_start(end, counted.zone))
    for granularity in ("day", "hour"):
        answer = await metrics(collector, key, "/v1/sites/counted/metrics", metrics="occupancy",
                               granularity=granularity, **{"from": str(first), "to": str(end)})
        want: dict[Any, int] = {}
        for quarter, level in levels.items():
            k = key_of(quarter, counted.zone, granularity)
            want[k] = max(want.get(k, 0), level)
        got = {key_of(datetime.fromisoformat(b["start"]), counted.zone, granularity): b["occupancy"]
               for b in answer["buckets"]}
        assert got == want
    sensed_days = await metrics(collector, key, "/v1/sites/sensed/metrics", metrics="occupancy",
                                **{"from": "2026-10-25", "to": "2026-10-27"})
    assert [b["occupancy"] for b in sensed_days["buckets"]] == [49, 49]
    sensed_hours = await metrics(collector, key, "/v1/sites/sensed/metrics", metrics="occupancy", granularity="hour",
                                 **{"from": "2026-10-25", "to": "2026-10-26"})
    assert [b["occupancy"] for b in sensed_hours["buckets"][:2]] == [max((i * 37) % 50 for i in range(4)),
                                                                      max((i * 37) % 50 for i in range(4, 8))]
    # Changing the reset time replays the balance over the stored days.
    async with collector.connection() as conn:
        await site_settings.update_site(conn, org, "counted", {"day_reset": "00:00"})
    counted.reset = time(0)
    levels = balance_by_quarter(counted, day_start(first, counted.zone), day_start(end, counted.zone))
    answer = await metrics(collector, key, "/v1/sites/counted/metrics", metrics="occupancy",
                           **{"from": str(first), "to": str(end)})
    want_days: dict[Any, int] = {}
    for quarter, level in levels.items():
        k = key_of(quarter, counted.zone, "day")
        want_days[k] = max(want_days.get(k, 0), level)
    assert [b["occupancy"] for b in answer["buckets"]] == [want_days[first + i * ONE] for i in range(3)]


async def test_comparisons_previous_period_and_last_year_by_weekday(collector: RunningCollector) -> None:
    org = await collector.create_org()
    store = Store("cmp", ZoneInfo("Australia/Sydney"))
    generate(store, date(2025, 3, 1), date(2025, 3, 31), seed=8)
    generate(store, date(2026, 2, 1), date(2026, 3, 31), seed=9)
    await make_site(collector, org, store)
    key = await collector.create_api_key(org)
    previous = await metrics(collector, key, "/v1/sites/cmp/metrics", compare="previous",
                             **{"from": "2026-03-09", "to": "2026-03-16"})
    assert previous["comparison"]["kind"] == "previous"
    check(previous["comparison"], reference([store], date(2026, 3, 2), date(2026, 3, 9), "day"), store.zone, "day")
    last_year = await metrics(collector, key, "/v1/sites/cmp/metrics", compare="last_year",
                              **{"from": "2026-03-09", "to": "2026-03-16"})
    assert last_year["comparison"]["from"].startswith("2025-03-10")  # Monday 2026-03-09 compares with Monday
    check(last_year["comparison"], reference([store], date(2025, 3, 10), date(2025, 3, 17), "day"), store.zone, "day")
    months = await metrics(collector, key, "/v1/sites/cmp/metrics", compare="previous", granularity="month",
                           **{"from": "2026-03-01", "to": "2026-04-01"})
    assert months["comparison"]["from"].startswith("2026-02-01")
    check(months["comparison"], reference([store], date(2026, 2, 1), date(2026, 3, 1), "month"), store.zone, "month")


async def test_the_estimated_occupancy_of_a_day_is_replayed_after_each_batch(collector: RunningCollector) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org, "lazy", timezone="UTC")
    agent = await collector.enroll(token=await collector.create_token(site, org))
    key = await collector.create_api_key(org)
    t0 = datetime(2026, 6, 10, 9, tzinfo=UTC)
    await upload(collector, agent, [count_record(1, t0, entries=5), count_record(2, t0 + QUARTER, entries=2, exits=1)])
    stale = "SELECT bool_or(version > refreshed) FROM balance_day WHERE site_id = 'lazy'"
    assert await collector.value(stale) is True  # ingest only marked the days
    span = {"from": "2026-06-10", "to": "2026-06-11", "metrics": "occupancy"}
    assert (await metrics(collector, key, "/v1/sites/lazy/metrics", **span))["totals"]["occupancy"] == 6
    assert await collector.value(stale) is False
    await upload(collector, agent, [count_record(3, t0 + 2 * QUARTER, entries=10)])
    assert await collector.value(stale) is True
    async with collector.session.get(collector.url + "/v1/sites/lazy/metrics", params=span,
                                     headers={"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}) as fresh:
        assert (await fresh.json())["totals"]["occupancy"] == 16
