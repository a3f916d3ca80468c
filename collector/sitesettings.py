"""A site's settings as the analysts' API uses them, checked once, with errors that name the field (pure: no I/O).

| setting | what | default |
|---|---|---|
| `timezone` | IANA zone of the store's local time | required |
| `visitors` | what a visitor is: `entries`, `exits`, or `mean` (their average, for doors used both ways) | `entries` |
| `day_reset` | local time the estimated occupancy restarts at zero, on a quarter hour (`04:00`) | `04:00` |
| `tags` | labels such as `region:north`; groups of sites are asked by tag | `[]` |
| `opening_hours` | weekly hours `{"mon": [["09:00", "19:00"]], ...}`; a day left out is closed | `null`: always |
| `hours_exceptions` | dated exceptions: `{"2026-12-25": [], "2026-12-24": [["09:00", "14:00"]]}` | `{}` |
| `expected_sensors` | names of the sensors the site should have; `null` = learnt from the data | `null` |

Times are local wall-clock `HH:MM` on a quarter hour (every zone's quarters are whole UTC
quarters), `24:00` closes at midnight; intervals of a day must not overlap. A quarter is
*trading* when its local start time falls inside an interval of its local day.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

VISITOR_MODES = ("entries", "exits", "mean")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,99}")
_SENSOR_MAX = 128
MAX_TAGS = 50
MAX_EXPECTED = 1000

# An interval of a day as minutes from local midnight: [start, end).
Interval = tuple[int, int]


class SettingsError(ValueError):
    """Settings that cannot be used: `problems` lists each, naming its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Weekly trading intervals and dated exceptions, in minutes from local midnight."""

    weekly: tuple[tuple[Interval, ...], ...]  # index 0 = Monday
    exceptions: Mapping[date, tuple[Interval, ...]] = field(default_factory=dict)

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """The trading intervals of a local day."""
        found = self.exceptions.get(day)
        return found if found is not None else self.weekly[day.weekday()]

    def is_trading(self, local: datetime) -> bool:
        """Whether the local wall-clock time `local` is inside trading hours."""
        minute = local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in self.intervals(local.date()))


def parse_hhmm(value: Any, where: str) -> int:
    """`09:30` -> 570 minutes; `24:00` allowed as an end."""
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise SettingsError([f"{where}: {value!r} is not a time HH:MM such as 09:00"])
    hours, minutes = int(value[:2]), int(value[3:])
    total = hours * 60 + minutes
    if total > 24 * 60:
        raise SettingsError([f"{where}: {value!r} is past 24:00"])
    if minutes % 15:
        raise SettingsError([f"{where}: {value!r} is not on a quarter hour (:00, :15, :30 or :45)"])
    return total


def _intervals(value: Any, where: str) -> tuple[Interval, ...]:
    if not isinstance(value, list):
        raise SettingsError([f"{where}: must be a list of [open, close] pairs such as [[\"09:00\", \"19:00\"]]"])
    out: list[Interval] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise SettingsError([f"{where}[{i}]: must be a pair [open, close] such as [\"09:00\", \"19:00\"]"])
        start, end = parse_hhmm(pair[0], f"{where}[{i}][0]"), parse_hhmm(pair[1], f"{where}[{i}][1]")
        if end <= start:
            raise SettingsError([f"{where}[{i}]: closes ({pair[1]}) before it opens ({pair[0]}); "
                                 "split a night across two days"])
        out.append((start, end))
    out.sort()
    for (_, end), (start, _) in itertools.pairwise(out):
        if start < end:
            raise SettingsError([f"{where}: intervals overlap"])
    return tuple(out)


def parse_opening_hours(weekly: Any, exceptions: Any) -> OpeningHours | None:
    """OpeningHours from the JSON of `opening_hours` and `hours_exceptions`; None when no weekly hours are set."""
    problems: list[str] = []
    days: dict[date, tuple[Interval, ...]] = {}
    if exceptions is None:
        exceptions = {}
    if not isinstance(exceptions, dict):
        problems.append("hours_exceptions: must be an object of dates, such as {\"2026-12-25\": []}")
    else:
        for text, value in exceptions.items():
            try:
                day = date.fromisoformat(text)
            except (TypeError, ValueError):
                problems.append(f"hours_exceptions: {text!r} is not a date YYYY-MM-DD")
                continue
            try:
                days[day] = _intervals(value, f"hours_exceptions.{text}")
            except SettingsError as exc:
                problems += exc.problems
    result: OpeningHours | None = None
    if weekly is not None:
        if not isinstance(weekly, dict):
            problems.append("opening_hours: must be an object such as {\"mon\": [[\"09:00\", \"19:00\"]]} or null")
        else:
            unknown = sorted(set(weekly) - set(DAYS))
            if unknown:
                problems.append(f"opening_hours: unknown days {unknown}; use {', '.join(DAYS)}")
            week: list[tuple[Interval, ...]] = []
            for name in DAYS:
                try:
                    week.append(_intervals(weekly.get(name, []), f"opening_hours.{name}"))
                except SettingsError as exc:
                    problems += exc.problems
                    week.append(())
            result = OpeningHours(tuple(week), days)
    elif days:
        problems.append("hours_exceptions: set opening_hours too; exceptions only amend weekly hours")
    if problems:
        raise SettingsError(problems)
    return result


def hours_json(hours: OpeningHours | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """OpeningHours back to the JSON of `opening_hours` and `hours_exceptions`."""
    if hours is None:
        return None, {}

    def text(intervals: tuple[Interval, ...]) -> list[list[str]]:
        return [[f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"] for a, b in intervals]

    weekly = {name: text(hours.weekly[i]) for i, name in enumerate(DAYS) if hours.weekly[i]}
    return weekly, {d.isoformat(): text(v) for d, v in sorted(hours.exceptions.items())}


def check_visitors(value: Any) -> str:
    """A visitor definition."""
    if value not in VISITOR_MODES:
        raise SettingsError([f"visitors: must be one of {', '.join(VISITOR_MODES)}, got {value!r}"])
    return str(value)


def check_day_reset(value: Any) -> time:
    """A daily reset time `HH:MM` on a quarter hour."""
    minutes = parse_hhmm(value, "day_reset")
    if minutes >= 24 * 60:
        raise SettingsError(["day_reset: must be before 24:00"])
    return time(minutes // 60, minutes % 60)


def check_tags(value: Any) -> list[str]:
    """Tags: distinct short labels."""
    if not isinstance(value, list) or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in value):
        raise SettingsError(["tags: must be a list of labels of letters, digits and _ . : / - (such as region:north)"])
    if len(value) > MAX_TAGS:
        raise SettingsError([f"tags: at most {MAX_TAGS}"])
    return sorted(set(value))


def check_expected_sensors(value: Any) -> list[str] | None:
    """Sensor names, or None to learn them from the data."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) and 0 < len(s) <= _SENSOR_MAX for s in value):
        raise SettingsError(["expected_sensors: must be a list of sensor names or null (learn them from the data)"])
    if len(value) > MAX_EXPECTED:
        raise SettingsError([f"expected_sensors: at most {MAX_EXPECTED}"])
    return sorted(set(value))


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """A sensor of a site, learnt from its data (see migrations/0005)."""

    name: str
    counts: bool
    occupancy: bool
    reporting_since: datetime
    last_report_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """Everything a metrics answer needs to know about one site."""

    org_id: str
    id: str
    name: str
    zone: ZoneInfo
    visitors: str = "entries"
    day_reset: time = time(4)
    tags: tuple[str, ...] = ()
    hours: OpeningHours | None = None
    expected_sensors: tuple[str, ...] | None = None
    sensors: tuple[SensorInfo, ...] = ()

    @property
    def has_occupancy_sensors(self) -> bool:
        """Whether occupancy comes from sensors (else it is estimated from counts)."""
        return any(s.occupancy and s.retired_at is None for s in self.sensors)

    def expected(self) -> list[tuple[str, datetime | None, datetime | None]]:
        """(sensor, expected from, until): configured names always, learnt ones from their first reading on."""
        if self.expected_sensors is not None:
            return [(name, None, None) for name in self.expected_sensors]
        return [(s.name, s.reporting_since, s.retired_at) for s in self.sensors]
