"""Completeness of counts spread over many quarters (collector/rollups.py, migrations/0018): pure, no database.

The full path (agent, ingest, hour answers saying "not complete") is the golden case
hikvision-isapi-realtime/quiet-spell-over-hour-boundary, run end to end by tests/e2e/test_adapters.py.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from footfall.collector.rollups import compute
from footfall.protocol.records import Count

PARIS = ZoneInfo("Europe/Paris")
DAY = date(2026, 3, 8)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


def quarters(mask: int) -> list[int]:
    return [i for i in range(128) if mask >> i & 1]


def count(start: datetime, end: datetime, entries: int, exits: int = 0) -> Count:
    return Count("cam", "main", ms(start), ms(end), entries, exits, seq=1)


def test_people_over_more_than_an_hour_are_spread_over_their_quarters() -> None:
    # A counter's first reading of the day: 12 people since midnight, read at 09:40.
    sums = compute([count(local(0), local(9, 40), 12, 3)], PARIS)
    covered, spread = sums.coverage[(DAY, "cam")], sums.spread[(DAY, "cam")]
    assert quarters(covered) == list(range(39)) == quarters(spread)
    # Filed wholly at its start, as every count: the day's total is exact.
    ((key, totals),) = sums.counts_day.items()
    assert (key[0], totals.entries, totals.exits) == (DAY, 12, 3)


def test_a_quiet_spell_and_short_periods_are_exact_in_their_quarters() -> None:
    sums = compute([
        count(local(9, 52), local(11, 7) - timedelta(milliseconds=1), 0),  # nobody for 75 minutes: exact
        count(local(11, 7) - timedelta(milliseconds=1), local(11, 7), 1),  # the visitor, at the push
        count(local(12, 10), local(13, 0), 4),  # 50 minutes: within the hour rule
    ], PARIS)
    assert (DAY, "cam") not in sums.spread
    assert quarters(sums.coverage[(DAY, "cam")]) == [*range(39, 45), *range(48, 52)]


def test_a_spread_count_across_midnight_covers_neither_day() -> None:
    sums = compute([count(local(22), local(2, day=DAY + timedelta(days=1)), 30)], PARIS)
    assert sums.coverage == {} and sums.spread == {}
    assert [(k[0], t.entries) for k, t in sums.counts_day.items()] == [(DAY, 30)]


def test_a_spread_count_in_utc_quarters_of_a_dst_day() -> None:
    # 29 March 2026 in Paris has 92 quarters: 02:00-03:00 does not exist.
    day = date(2026, 3, 29)
    sums = compute([count(local(0, day=day), local(4, day=day), 8)], PARIS)
    assert quarters(sums.spread[(day, "cam")]) == list(range(12))
