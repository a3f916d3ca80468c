"""Answer periods in a site's local time: granularities, buckets, their keys, and comparison ranges (pure: no I/O).

A query's range is kept as two *local wall-clock* bounds (naive datetimes, `fold` telling the two
occurrences of a repeated hour apart), so one range means the same local period in every zone of
a group: 2026-03-01..2026-04-01 is March in Paris, in Kolkata and in New York alike. Each site
turns the bounds into UTC instants in its own zone.

Buckets:
- `15m` and `hour` buckets are runs of 15-minute UTC quarters with the same local quarter or hour
  (wall clock *and* offset): a spring-forward day has 23 hours, a fall-back day 25, its repeated
  hour twice. Every UTC offset in use is a multiple of 15 minutes, so quarters never straddle.
- `day`, `week` and `month` buckets are local days and runs of them; a week starts on the
  organization's week start (ISO: Monday).
A bucket's *key* is its local identity: `(wall-clock start, fold)` for 15m and hour, the date of
its first day otherwise. Sites of a group add up under equal keys: that is how a group answer
aggregates each site's own local periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from .balance import day_start

Granularity = Literal["15m", "hour", "day", "week", "month"]
GRANULARITIES: tuple[Granularity, ...] = ("15m", "hour", "day", "week", "month")
INTRADAY: frozenset[str] = frozenset({"15m", "hour"})
QUARTER = timedelta(minutes=15)
ONE_DAY = timedelta(days=1)
# The longest range of each granularity (local wall-clock length).
MAX_RANGE: dict[str, timedelta] = {
    "15m": timedelta(days=14),
    "hour": timedelta(days=31),
    "day": timedelta(days=732),
    "week": timedelta(days=3660),
    "month": timedelta(days=3660),
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Compare = Literal["previous", "last_year"]
COMPARISONS: tuple[Compare, ...] = ("previous", "last_year")

Key = tuple[datetime, int] | date


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (its `fold` picks the occurrence of a repeated time).

    A wall-clock time skipped by a spring-forward change is read with the offset before the change
    (PEP 495), so a day whose midnight is skipped starts at the change, when the clocks jump.
    """
    return wall.replace(tzinfo=zone).astimezone(UTC)


def wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    """The local wall-clock time of an instant, naive, with `fold` set for the second occurrence of a repeated time."""
    local = instant.astimezone(zone)
    return local.replace(tzinfo=None)


def floor_wall(wall: datetime, granularity: str, week_start: int) -> datetime:
    """The wall-clock start of the period holding `wall` (fold kept for 15m and hour)."""
    if granularity == "15m":
        return wall.replace(minute=wall.minute - wall.minute % 15, second=0, microsecond=0)
    if granularity == "hour":
        return wall.replace(minute=0, second=0, microsecond=0)
    return datetime.combine(period_of(wall.date(), granularity, week_start), time(0))


def period_of(day: date, granularity: str, week_start: int) -> date:
    """The first day of the day, week or month holding `day`; `week_start` is an ISO weekday (1 = Monday)."""
    if granularity == "week":
        return day - timedelta(days=(day.isoweekday() - week_start) % 7)
    if granularity == "month":
        return day.replace(day=1)
    return day


def is_aligned(instant: datetime, zone: ZoneInfo, granularity: str, week_start: int) -> bool:
    """Whether `instant` starts a local period of `granularity` in `zone`."""
    wall = wall_clock(instant, zone)
    start = floor_wall(wall, granularity, week_start)
    if granularity in INTRADAY:
        return start == wall
    return localize(start, zone) == instant


def to_wall_bound(instant: datetime, zone: ZoneInfo, granularity: str, week_start: int) -> datetime:
    """An aligned instant as a wall-clock bound (day and longer: local midnight, even where midnight is skipped)."""
    wall = wall_clock(instant, zone)
    return wall if granularity in INTRADAY else floor_wall(wall, granularity, week_start)


def wall_length(start: datetime, end: datetime) -> timedelta:
    """The wall-clock length of a range (fold ignored)."""
    return end.replace(fold=0) - start.replace(fold=0)


@dataclass(frozen=True, slots=True)
class SiteBucket:
    """One bucket of one site: its key and UTC [start, end)."""

    key: Key
    start: datetime
    end: datetime


def utc_range(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of wall-clock bounds in `zone`."""
    return localize(start, zone), localize(end, zone)


def quarter_key(quarter: datetime, zone: ZoneInfo, granularity: str, week_start: int) -> Key:
    """The key of the bucket holding the UTC quarter starting at `quarter`."""
    local = quarter.astimezone(zone)
    if granularity in INTRADAY:
        wall = floor_wall(local.replace(tzinfo=None), granularity, week_start)
        return (wall, local.fold)
    return period_of(local.date(), granularity, week_start)


def site_buckets(
    start: datetime, end: datetime, zone: ZoneInfo, granularity: str, week_start: int
) -> list[SiteBucket]:
    """The buckets of one site between wall-clock bounds `start` and `end` (aligned to `granularity`)."""
    first, last = utc_range(start, end, zone)
    buckets: list[SiteBucket] = []
    if granularity in INTRADAY:
        moment = first
        while moment < last:
            key = quarter_key(moment, zone, granularity, week_start)
            if buckets and buckets[-1].key == key:
                buckets[-1] = SiteBucket(key, buckets[-1].start, moment + QUARTER)
            else:
                buckets.append(SiteBucket(key, moment, moment + QUARTER))
            moment += QUARTER
        return buckets
    day = start.date()
    stop = end.date()
    while day < stop:
        following = next_period(day, granularity)
        buckets.append(SiteBucket(day, day_start(day, zone), day_start(following, zone)))
        day = following
    return buckets


def next_period(day: date, granularity: str) -> date:
    """The first day of the period after the one starting on `day`."""
    if granularity == "week":
        return day + timedelta(days=7)
    if granularity == "month":
        return add_months(day, 1)
    return day + ONE_DAY


def add_months(day: date, count: int) -> date:
    """The same day `count` months later (first days of months stay first days)."""
    index = day.year * 12 + day.month - 1 + count
    return day.replace(year=index // 12, month=index % 12 + 1)


def months_between(start: date, end: date) -> int:
    """Whole months from one first-of-month to another."""
    return (end.year - start.year) * 12 + end.month - start.month


def comparison(start: datetime, end: datetime, granularity: str, compare: str) -> tuple[datetime, datetime]:
    """The wall-clock bounds of the comparison range.

    `previous`: the range of the same length just before (in months for month buckets, in
    wall-clock time otherwise). `last_year`: 52 weeks before, so every day falls on the same
    weekday (Monday compares with a Monday); month buckets compare with the same months a year
    before, weekdays being meaningless for calendar months.
    """
    if granularity == "month":
        months = months_between(start.date(), end.date()) if compare == "previous" else 12
        return (datetime.combine(add_months(start.date(), -months), time(0)),
                datetime.combine(add_months(end.date(), -months), time(0)))
    shift = wall_length(start, end) if compare == "previous" else timedelta(weeks=52)
    return start.replace(fold=0) - shift, end.replace(fold=0) - shift


def key_label(key: Key) -> tuple[str, int]:
    """A key as (wall-clock ISO text, fold) for group answers."""
    if isinstance(key, tuple):
        return key[0].isoformat(), key[1]
    return datetime.combine(key, time(0)).isoformat(), 0


def key_end_label(key: Key, granularity: str) -> str:
    """The wall-clock end of a key's period, for group answers."""
    if isinstance(key, tuple):
        return (key[0] + (QUARTER if granularity == "15m" else timedelta(hours=1))).isoformat()
    return datetime.combine(next_period(key, granularity), time(0)).isoformat()


def key_sort(key: Key) -> tuple[datetime, int]:
    """Keys in time order (the first occurrence of a repeated hour before the second)."""
    if isinstance(key, tuple):
        return (key[0], key[1])
    return (datetime.combine(key, time(0)), 0)
