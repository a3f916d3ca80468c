"""Estimated occupancy for sites without occupancy sensors: the running balance of entries minus exits.

The balance is replayed quarter by quarter (15-minute UTC buckets, in time order): it adds each
quarter's entries and subtracts its exits, never goes below zero, and restarts at zero at the
site's daily reset time (local, such as 04:00). A quarter starting at a reset instant belongs to
the new period. Because each value depends on every earlier quarter since the last reset, the
balance is not a sum the rollups can upsert: ingest marks the local days whose reset periods a
batch touched as stale, a day answer has PostgreSQL replay them (`footfall_refresh_balance`,
migrations/0006) before reading their peaks, and intraday answers replay the balance here. Both
use the spans computed here, so the database and the API agree on every local day. Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ONE_DAY = timedelta(days=1)
QUARTER = timedelta(minutes=15)


def reset_at(day: date, reset: time, zone: ZoneInfo) -> datetime:
    """The reset instant of the local `day` (a reset time skipped by a clock change falls on the change)."""
    return datetime.combine(day, reset, tzinfo=zone).astimezone(UTC)


def reset_before(moment: datetime, reset: time, zone: ZoneInfo) -> datetime:
    """The latest reset instant at or before `moment`."""
    day = moment.astimezone(zone).date()
    instant = reset_at(day, reset, zone)
    return instant if instant <= moment else reset_at(day - ONE_DAY, reset, zone)


@functools.lru_cache(maxsize=1 << 16)
def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of the local `day` (memoised: answers ask for the same days over and over)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Refresh:
    """What `footfall_refresh_balance` must replay and write: its arguments, ready to send."""

    resets: list[datetime]
    days: list[date]
    day_starts: list[datetime]


def refresh_for(quarters: Iterable[datetime], reset: time, zone: ZoneInfo) -> Refresh | None:
    """The replay needed after counts landed in `quarters`: the local days whose peak may have changed.

    Those are the days overlapping a touched reset period; each is replayed whole, so the span
    runs over every reset period overlapping any of them.
    """
    touched = sorted(quarters)
    if not touched:
        return None
    first_period = reset_before(touched[0], reset, zone)
    last_period = reset_before(touched[-1], reset, zone)
    last_period_end = reset_at(last_period.astimezone(zone).date() + ONE_DAY, reset, zone)
    if last_period_end <= last_period:  # a reset skipped twice in a row cannot happen, but never loop on it
        last_period_end = last_period + ONE_DAY
    first_day = first_period.astimezone(zone).date()
    last_day = (last_period_end - timedelta(microseconds=1)).astimezone(zone).date()
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    starts = [day_start(d, zone) for d in days] + [day_start(last_day + ONE_DAY, zone)]
    span_first = reset_before(starts[0], reset, zone)
    span_last = reset_before(starts[-1] - timedelta(microseconds=1), reset, zone)
    resets = [span_first]
    while resets[-1] <= span_last:
        resets.append(reset_at(resets[-1].astimezone(zone).date() + ONE_DAY, reset, zone))
    return Refresh(resets, days, starts)


def replay(
    quarters: Iterable[tuple[datetime, int, int]], start: datetime, reset: time, zone: ZoneInfo
) -> dict[datetime, int]:
    """The balance after each quarter: `quarters` are (bucket start, entries, exits), ascending, from `start` on.

    `start` must be a reset instant (see reset_before); quarters with no counts keep the balance.
    """
    balances: dict[datetime, int] = {}
    balance = 0
    next_reset = reset_at(start.astimezone(zone).date() + ONE_DAY, reset, zone)
    for quarter, entries, exits in quarters:
        while quarter >= next_reset:
            balance = 0
            next_reset = reset_at(next_reset.astimezone(zone).date() + ONE_DAY, reset, zone)
        balance = max(0, balance + entries - exits)
        balances[quarter] = balance
    return balances
