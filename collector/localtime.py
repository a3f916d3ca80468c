"""Local days and hours of a site's zone, as instants in UTC (pure: no I/O).

The metrics API answers in the store's local time, and local time is not a fixed offset:
on the day clocks go forward a local day has 23 hours and the hour 02:00-03:00 does not exist;
on the day they go back it has 25 hours and 01:00-02:00 happens twice, once at each offset.
Everything here works on UTC instants and asks zoneinfo what the local clock reads, so those
days come out right without special cases. Buckets of every granularity are in collector/periods.py.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Wide enough for any data, narrow enough that a zone's offset or a year back stays inside datetime's 1-9999.
MIN_YEAR, MAX_YEAR = 1000, 9000
# "2026-03-08T10:00:00 01:00": a "+" left unencoded in a query string arrives as a space.
_LOST_PLUS = re.compile(r"\A(.*[0-9]) ([0-9]{2}:?[0-9]{2})\Z")


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of the local `day`, in UTC.

    Usually local midnight; where midnight itself is skipped by a clock change the day starts
    at the first local time that exists (fold=0 maps a skipped time onto the transition).
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def parse_bound(text: str, zone: ZoneInfo) -> datetime:
    """A query bound: a local date (`2026-03-08`, the start of that day in `zone`) or an ISO datetime with an offset.

    Raises ValueError with a message fit for the person who wrote the query.
    """
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a calendar date (YYYY-MM-DD, such as 2026-03-08)") from None
        check_year(day, text)
        return start_of_day(day, zone)
    repaired = _LOST_PLUS.sub(r"\1+\2", text)
    try:
        moment = datetime.fromisoformat(repaired)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a date (2026-03-08) nor an ISO datetime with an offset (2026-03-08T10:00:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"{text!r} has no UTC offset; add one (2026-03-08T10:00:00+01:00 or ...Z) or give a date for local midnight"
        )
    check_year(moment, text)
    return moment.astimezone(UTC)


def check_year(moment: date, text: str) -> None:
    """ValueError for a date in the first or last years of the calendar: a zone's offset (or a comparison a year
    back) would take it past what Python's datetime holds."""
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"{text!r} is outside the years {MIN_YEAR}-{MAX_YEAR} this collector answers for")


def local_iso(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-03-08T03:00:00-04:00`: the local clock with its offset, unambiguous even on a fall-back day."""
    return moment.astimezone(zone).isoformat()
