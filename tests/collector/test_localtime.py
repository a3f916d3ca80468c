"""Local days and hours as UTC instants (pure functions), and the per-batch rollup sums they feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from footfall.collector import rollups
from footfall.collector.localtime import parse_bound, start_of_day
from footfall.collector.periods import is_aligned, site_buckets
from footfall.protocol.records import Count, Transaction

from tests.fixtures.collector import count_record, ms, transaction_record

PARIS = ZoneInfo("Europe/Paris")
SANTIAGO = ZoneInfo("America/Santiago")  # clocks change at local midnight there


def test_a_date_means_the_first_instant_of_that_local_day() -> None:
    assert parse_bound("2026-03-29", PARIS) == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert parse_bound("2026-03-30", PARIS) == datetime(2026, 3, 29, 22, tzinfo=UTC)
    # In Santiago 2026-09-06 00:00 does not exist (clocks jump to 01:00): the day starts at 01:00 local.
    start = start_of_day(date(2026, 9, 6), SANTIAGO)
    assert start.astimezone(SANTIAGO).hour == 1
    assert start - start_of_day(date(2026, 9, 5), SANTIAGO) == timedelta(hours=24)
    assert is_aligned(start, SANTIAGO, "day", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-08T10:00:00+01:00", datetime(2026, 3, 8, 9, tzinfo=UTC)),
        ("2026-03-08T10:00:00Z", datetime(2026, 3, 8, 10, tzinfo=UTC)),
        ("2026-03-08T10:00:00 01:00", datetime(2026, 3, 8, 9, tzinfo=UTC)),  # "+" decoded to a space
        ("2026-03-08T10:00:00-05:00", datetime(2026, 3, 8, 15, tzinfo=UTC)),
    ],
)
def test_datetimes_keep_their_offset(text: str, expected: datetime) -> None:
    assert parse_bound(text, PARIS) == expected


@pytest.mark.parametrize("text", ["2026-13-01", "tomorrow", "2026-03-08T10:00:00", "", "2026-03-08 10:00 oops"])
def test_unreadable_bounds_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="2026-03-08"):
        parse_bound(text, PARIS)


def test_day_buckets_follow_the_local_clock() -> None:
    buckets = site_buckets(datetime(2026, 10, 24), datetime(2026, 10, 27), PARIS, "day", 1)
    assert [b.key for b in buckets] == [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
    assert [(b.end - b.start) / timedelta(hours=1) for b in buckets] == [24, 25, 24]


def test_hour_buckets_on_a_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    buckets = site_buckets(datetime(2026, 1, 5), datetime(2026, 1, 6), kolkata, "hour", 1)
    assert len(buckets) == 24
    assert buckets[0].start == datetime(2026, 1, 4, 18, 30, tzinfo=UTC)
    assert all(b.end - b.start == timedelta(hours=1) for b in buckets)


def test_rollups_sum_a_batch_per_bucket_and_local_day() -> None:
    midnight_paris = datetime(2026, 6, 9, 22, 0, tzinfo=UTC)
    records = [
        count_record(1, midnight_paris - timedelta(minutes=1), entries=2),  # 23:59 on June 9 in Paris
        count_record(2, midnight_paris, entries=3),
        count_record(3, midnight_paris + timedelta(minutes=14), entries=4, exits=1),
        Count("door", "main", ms(midnight_paris) + 1, ms(midnight_paris) + 60_000, 1, 0, seq=4),
        transaction_record(5, midnight_paris, amount_minor=999, items=2),
        transaction_record(6, midnight_paris, kind="refund", amount_minor=100, items=1),
        Transaction("pos1", "t7", ms(midnight_paris), "sale", 50, "USD", seq=7),
    ]
    sums = rollups.compute(records, PARIS)
    day9, day10 = date(2026, 6, 9), date(2026, 6, 10)
    assert {k: (v.entries, v.exits) for k, v in sums.counts_15m.items()} == {
        (midnight_paris - timedelta(minutes=15), "door", "main"): (2, 0),
        (midnight_paris, "door", "main"): (8, 1),
    }
    assert {k: (v.entries, v.exits) for k, v in sums.counts_day.items()} == {
        (day9, "door", "main"): (2, 0), (day10, "door", "main"): (8, 1),
    }
    assert sums.sales_day[(day10, "pos1", "EUR")].values() == (1, 999, 1, 100, 0, 0, 2)
    assert sums.sales_day[(day10, "pos1", "USD")].values() == (1, 50, 0, 0, 0, 0, 0)
    first, last = sums.sensors[("sensor", "door")]
    assert (first, last) == (midnight_paris - timedelta(minutes=1), midnight_paris + timedelta(minutes=14))
