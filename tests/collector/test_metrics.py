"""GET /v1/sites/{site}/footfall: local days and hours across DST changes, tenancy, and every refused query."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from footfall.collector import admin

from tests.fixtures.collector import EnrolledAgent, RunningCollector, count_record

QUARTER = timedelta(minutes=15)


async def upload_every_quarter(
    collector: RunningCollector, agent: EnrolledAgent, zone: str, first: date, last: date, seq: int = 1
) -> int:
    """One count (1 in, 2 out) per 15 minutes over the local days first..last; returns the next seq."""
    tz = ZoneInfo(zone)
    moment = datetime.combine(first, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz).astimezone(UTC)
    records = []
    while moment < end:
        records.append(count_record(seq, moment, entries=1, exits=2))
        seq, moment = seq + 1, moment + QUARTER
    answer = await collector.upload(agent, records)
    assert answer.status == 200, answer.body
    return seq


async def site_with_data(collector: RunningCollector, zone: str, days: list[tuple[date, date]]) -> tuple[str, str]:
    """A site in `zone` with counts every quarter hour over `days`; (site id, analyst key)."""
    org = await collector.create_org()
    site = await collector.create_site(org, "store", timezone=zone)
    agent = await collector.enroll(token=await collector.create_token(site, org))
    seq = 1
    for first, last in days:
        seq = await upload_every_quarter(collector, agent, zone, first, last, seq)
    return site, await collector.create_api_key(org, "analyst")


# zone, the day clocks go forward, the day they go back (2026)
DST = [
    ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ("Europe/Paris", date(2026, 3, 29), date(2026, 10, 25)),
]


@pytest.mark.parametrize(("zone", "spring", "fall"), DST, ids=[d[0] for d in DST])
async def test_local_days_across_dst_have_23_and_25_hours(
    collector: RunningCollector, zone: str, spring: date, fall: date
) -> None:
    one = timedelta(days=1)
    site, key = await site_with_data(collector, zone, [(spring - 2 * one, spring + 2 * one), (fall - one, fall + one)])
    answer = await collector.get(
        f"/v1/sites/{site}/footfall", key=key,
        params={"from": str(spring - 3 * one), "to": str(spring + 3 * one), "granularity": "day"},
    )
    assert answer.status == 200, answer.body
    body = answer.body
    assert (body["site"], body["timezone"], body["granularity"]) == (site, zone, "day")
    assert [b["entries"] for b in body["buckets"]] == [0, 96, 96, 92, 96, 96]  # the day before the data: zeros
    assert [b["exits"] for b in body["buckets"]] == [0, 192, 192, 184, 192, 192]
    assert body["totals"] == {"entries": 476, "exits": 952}
    spring_bucket = body["buckets"][3]
    winter, summer = spring_bucket["start"][-6:], spring_bucket["end"][-6:]
    assert spring_bucket["start"] == f"{spring}T00:00:00{winter}"
    assert spring_bucket["end"] == f"{spring + one}T00:00:00{summer}"
    assert winter != summer
    assert body["from"] == f"{spring - 3 * one}T00:00:00{winter}"

    answer = await collector.get(
        f"/v1/sites/{site}/footfall", key=key, params={"from": str(fall - one), "to": str(fall + 2 * one)}
    )
    assert [b["entries"] for b in answer.body["buckets"]] == [96, 100, 96]
    assert answer.body["totals"]["entries"] == 292


@pytest.mark.parametrize(("zone", "spring", "fall"), DST, ids=[d[0] for d in DST])
async def test_local_hours_skip_the_spring_hour_and_repeat_the_fall_hour(
    collector: RunningCollector, zone: str, spring: date, fall: date
) -> None:
    site, key = await site_with_data(collector, zone, [(spring, spring), (fall, fall)])
    path = f"/v1/sites/{site}/footfall"

    spring_day = await collector.get(
        path, key=key, params={"from": str(spring), "to": str(spring + timedelta(days=1)), "granularity": "hour"}
    )
    assert spring_day.status == 200, spring_day.body
    buckets = spring_day.body["buckets"]
    assert len(buckets) == 23
    assert all(b["entries"] == 4 and b["exits"] == 8 for b in buckets)
    hours = [int(b["start"][11:13]) for b in buckets]
    skipped = 2  # both zones jump from 02:00 to 03:00 local
    assert skipped not in hours and hours == sorted(hours)
    assert buckets[skipped - 1]["end"] == buckets[skipped]["start"]
    assert spring_day.body["totals"]["entries"] == 92

    fall_day = await collector.get(
        path, key=key, params={"from": str(fall), "to": str(fall + timedelta(days=1)), "granularity": "hour"}
    )
    buckets = fall_day.body["buckets"]
    assert len(buckets) == 25
    assert all(b["entries"] == 4 for b in buckets)
    repeated = 1 if zone == "America/New_York" else 2  # New York repeats 01:00, Paris 02:00
    twice = [b["start"] for b in buckets if int(b["start"][11:13]) == repeated]
    assert len(twice) == 2 and twice[0][:19] == twice[1][:19] and twice[0][19:] != twice[1][19:]
    assert fall_day.body["totals"]["entries"] == 100


async def test_bounds_take_iso_datetimes_with_offsets(collector: RunningCollector) -> None:
    site, key = await site_with_data(collector, "Europe/Paris", [(date(2026, 6, 10), date(2026, 6, 10))])
    answer = await collector.get(
        f"/v1/sites/{site}/footfall", key=key,
        # 09:00-12:00 Paris time, written in UTC and with an offset left unencoded (a "+" read as a space)
        params={"from": "2026-06-10T07:00:00Z", "to": "2026-06-10T12:00:00 02:00", "granularity": "hour"},
    )
    assert answer.status == 200, answer.body
    assert [b["start"] for b in answer.body["buckets"]] == [
        "2026-06-10T09:00:00+02:00", "2026-06-10T10:00:00+02:00", "2026-06-10T11:00:00+02:00",
    ]
    assert answer.body["totals"] == {"entries": 12, "exits": 24}


async def test_csv(collector: RunningCollector) -> None:
    site, key = await site_with_data(collector, "Europe/Paris", [(date(2026, 6, 10), date(2026, 6, 10))])
    answer = await collector.get(
        f"/v1/sites/{site}/footfall", key=key, params={"from": "2026-06-10", "to": "2026-06-12", "format": "csv"}
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert answer.body.splitlines() == [
        "start,end,entries,exits",
        "2026-06-10T00:00:00+02:00,2026-06-11T00:00:00+02:00,96,192",
        "2026-06-11T00:00:00+02:00,2026-06-12T00:00:00+02:00,0,0",
    ]


async def test_another_organizations_site_is_not_found(collector: RunningCollector) -> None:
    site, own_key = await site_with_data(collector, "Europe/Paris", [(date(2026, 6, 10), date(2026, 6, 10))])
    other_org = await collector.create_org()
    other_key = await collector.create_api_key(other_org, "fleet_admin")
    params = {"from": "2026-06-10", "to": "2026-06-11"}
    theirs = await collector.get(f"/v1/sites/{site}/footfall", key=other_key, params=params)
    nowhere = await collector.get("/v1/sites/no-such-site/footfall", key=other_key, params=params)
    assert (theirs.status, theirs.body["error"]) == (404, "not_found")
    assert theirs.body["message"] == nowhere.body["message"].replace("no-such-site", site)
    # The other organization may have a site with the same id: each key sees its own.
    await collector.create_site(other_org, site, timezone="Asia/Tokyo")
    mine = await collector.get(f"/v1/sites/{site}/footfall", key=own_key, params=params)
    same_id = await collector.get(f"/v1/sites/{site}/footfall", key=other_key, params=params)
    assert (mine.body["timezone"], mine.body["totals"]["entries"]) == ("Europe/Paris", 96)
    assert (same_id.body["timezone"], same_id.body["totals"]["entries"]) == ("Asia/Tokyo", 0)


async def test_keys_are_checked(collector: RunningCollector) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    key = await collector.create_api_key(org)
    path, params = f"/v1/sites/{site}/footfall", {"from": "2026-06-10", "to": "2026-06-11"}
    missing = await collector.get(path, params=params)
    assert (missing.status, missing.body["error"]) == (401, "missing_api_key")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await collector.get(path, key="ffk_notakey", params=params)
    assert (wrong.status, wrong.body["error"]) == (401, "invalid_api_key")
    assert (await collector.get(path, key=key, params=params)).status == 200
    async with collector.connection() as conn:
        key_id = (await admin.list_api_keys(conn, org))[0].id
        await admin.revoke_api_key(conn, key_id)
    revoked = await collector.get(path, key=key, params=params)
    assert (revoked.status, revoked.body["error"]) == (401, "invalid_api_key")


BAD_QUERIES = [
    ({"from": "2026-06-10", "to": "2026-06-11", "granularity": "minute"}, "bad_granularity"),
    ({"from": "yesterday", "to": "2026-06-11"}, "bad_date"),
    ({"from": "2026-02-30", "to": "2026-03-02"}, "bad_date"),
    ({"from": "2026-06-10T00:00:00", "to": "2026-06-11"}, "bad_date"),
    ({"to": "2026-06-11"}, "missing_parameter"),
    ({"from": "2026-06-11", "to": "2026-06-10"}, "bad_range"),
    ({"from": "2026-06-10", "to": "2026-06-10"}, "bad_range"),
    ({"from": "2024-01-01", "to": "2026-06-10"}, "range_too_large"),
    ({"from": "2026-05-01", "to": "2026-06-10", "granularity": "hour"}, "range_too_large"),
    ({"from": "2026-06-10T09:30:00+02:00", "to": "2026-06-11", "granularity": "hour"}, "unaligned_range"),
    ({"from": "2026-06-10T09:00:00+02:00", "to": "2026-06-11", "granularity": "day"}, "unaligned_range"),
]


@pytest.mark.parametrize(("params", "code"), BAD_QUERIES, ids=[c for _, c in BAD_QUERIES])
async def test_a_bad_query_is_400_with_its_reason(
    collector: RunningCollector, params: dict[str, str], code: str
) -> None:
    org = await collector.create_org()
    site = await collector.create_site(org)
    answer = await collector.get(f"/v1/sites/{site}/footfall", key=await collector.create_api_key(org), params=params)
    assert (answer.status, answer.body["error"]) == (400, code), answer.body
    assert answer.body["message"]


async def test_fleet_admins_list_their_organizations_agents(collector: RunningCollector) -> None:
    agent = await collector.enroll()
    await collector.enroll()  # another organization's agent
    assert (await collector.upload(agent, [count_record(7, datetime(2026, 6, 10, tzinfo=UTC))])).status == 200
    admin_key = await collector.create_api_key(agent.org, "fleet_admin")
    answer = await collector.get("/v1/admin/agents", key=admin_key)
    assert answer.status == 200
    (listed,) = answer.body["agents"]
    assert (listed["id"], listed["site"], listed["status"], listed["version"], listed["hw_seq"]) == (
        agent.id, agent.site, "active", "0.1.0", 7,
    )
    assert listed["last_seen"] is not None
    analyst = await collector.get("/v1/admin/agents", key=await collector.create_api_key(agent.org, "analyst"))
    assert (analyst.status, analyst.body["error"]) == (403, "forbidden")
