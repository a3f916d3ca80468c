"""Pure parts of the analysts' API: periods, comparisons, opening hours, the balance spans and the answer cache."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from footfall.collector import balance
from footfall.collector.cache import AnswerCache, Scope, notice
from footfall.collector.periods import comparison, is_aligned, site_buckets
from footfall.collector.sitesettings import SettingsError, parse_opening_hours

KATHMANDU = ZoneInfo("Asia/Kathmandu")
NEW_YORK = ZoneInfo("America/New_York")


def test_weeks_and_months_start_where_asked() -> None:
    weeks = site_buckets(datetime(2026, 3, 1), datetime(2026, 3, 15), NEW_YORK, "week", 7)
    assert [b.key for b in weeks] == [date(2026, 3, 1), date(2026, 3, 8)]
    assert weeks[1].end - weeks[1].start == timedelta(days=7, hours=-1)  # the spring-forward week
    months = site_buckets(datetime(2026, 1, 1), datetime(2026, 4, 1), KATHMANDU, "month", 1)
    assert [b.key for b in months] == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert months[0].start == datetime(2025, 12, 31, 18, 15, tzinfo=UTC)
    assert is_aligned(datetime(2026, 3, 2, 5, tzinfo=UTC), NEW_YORK, "week", 1)
    assert not is_aligned(datetime(2026, 3, 2, 5, tzinfo=UTC), NEW_YORK, "week", 7)


def test_quarter_hours_of_a_45_minute_zone() -> None:
    quarters = site_buckets(datetime(2026, 1, 5), datetime(2026, 1, 5, 1), KATHMANDU, "15m", 1)
    assert [b.start.strftime("%H:%M") for b in quarters] == ["18:15", "18:30", "18:45", "19:00"]


def test_comparison_ranges() -> None:
    monday, next_monday = datetime(2026, 3, 9), datetime(2026, 3, 16)
    assert comparison(monday, next_monday, "day", "previous") == (datetime(2026, 3, 2), monday)
    last_year = comparison(monday, next_monday, "day", "last_year")
    assert last_year[0].weekday() == monday.weekday() and last_year[0].year == 2025
    assert comparison(datetime(2026, 1, 1), datetime(2026, 4, 1), "month", "previous") == (
        datetime(2025, 10, 1), datetime(2026, 1, 1))
    assert comparison(datetime(2026, 3, 1), datetime(2026, 4, 1), "month", "last_year")[0] == datetime(2025, 3, 1)


def test_opening_hours_are_checked_and_read() -> None:
    hours = parse_opening_hours({"mon": [["09:00", "12:00"], ["13:00", "24:00"]]}, {"2026-03-09": []})
    assert hours is not None
    assert hours.is_trading(datetime(2026, 3, 2, 23, 45)) and not hours.is_trading(datetime(2026, 3, 2, 12, 30))
    assert not hours.is_trading(datetime(2026, 3, 9, 10))  # the exception closes that Monday
    with pytest.raises(SettingsError) as caught:
        parse_opening_hours({"mon": [["09:10", "12:00"]], "funday": [], "tue": [["10:00", "09:00"]]}, {"x": []})
    text = str(caught.value)
    for part in ("quarter hour", "funday", "opening_hours.tue", "hours_exceptions: 'x'"):
        assert part in text


def test_balance_replays_whole_reset_periods_of_the_touched_days() -> None:
    zone = ZoneInfo("Europe/Paris")
    touched = [datetime(2026, 3, 29, 1, 15, tzinfo=UTC)]  # 03:15 local on the spring-forward day
    refresh = balance.refresh_for(touched, time(4), zone)
    assert refresh is not None
    assert refresh.days == [date(2026, 3, 28), date(2026, 3, 29)]
    assert refresh.resets[0] == datetime(2026, 3, 27, 3, tzinfo=UTC) and refresh.resets[-1] > refresh.day_starts[-1]
    quarters = [(datetime(2026, 3, 29, 1, tzinfo=UTC), 5, 1), (datetime(2026, 3, 29, 1, 15, tzinfo=UTC), 0, 9),
                (datetime(2026, 3, 29, 2, tzinfo=UTC), 3, 0)]
    level = balance.replay(quarters, refresh.resets[0], time(4), zone)
    assert list(level.values()) == [4, 0, 3]  # never below zero; 04:00 local (02:00 UTC) restarts at zero


async def test_the_cache_coalesces_invalidates_and_never_stores_a_raced_answer() -> None:
    cache = AnswerCache(enabled=True)
    scope = Scope("acme", frozenset({"paris"}), datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    release = asyncio.Event()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiting = [asyncio.create_task(cache.get("k", scope, compute)) for _ in range(3)]
    await asyncio.sleep(0)
    cache.apply(notice("acme", "paris", (datetime(2026, 6, 10, tzinfo=UTC), datetime(2026, 6, 10, 1, tzinfo=UTC))))
    release.set()
    assert [await t for t in waiting] == [1, 1, 1]
    assert await cache.get("k", scope, compute) == 2  # the first answer raced a batch: not stored
    assert await cache.get("k", scope, compute) == 2
    cache.apply(notice("acme", "lyon", None))
    cache.apply(notice("acme", "paris", (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 2, tzinfo=UTC))))
    assert await cache.get("k", scope, compute) == 2
    cache.apply(notice("acme", None, None))
    assert await cache.get("k", scope, compute) == 3
    cache.apply("not json")
    assert await cache.get("k", scope, compute) == 4
