"""A batch's contribution to the rollups, computed in Python before it is upserted (pure: no I/O).

Summing in Python first means one upserted row per (bucket, sensor, line) a batch touches,
not one per record, so the database's ON CONFLICT work does not grow with the batch.

The rules (the SQL comments in migrations/0003_rollups.sql say why):
- a count lands wholly in the 15-minute UTC bucket, and the local day, of its period start;
- a count covers (completeness) every quarter its period overlaps; one with people over more
  than an hour is *spread*: nobody knows in which of its quarters they came, so its quarters are
  covered for its day's answers but marked spread, which 15-minute and hour answers do not count
  as reported (migrations/0018_coverage_spread.sql). One that crosses local midnight covers
  nothing: its people are all filed in its first day, so neither day is exact;
- a transaction lands in the bucket and local day of its time; refunds and voids are kept
  apart from sales, all amounts positive;
- the local day is computed with zoneinfo in the site's IANA zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from footfall.protocol.records import Count, Occupancy, Record, SensorEvent, Transaction

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BUCKET = timedelta(minutes=15)
# A count with people over a longer period is spread: exact for its day, not for its hours.
SPREAD_OVER = timedelta(hours=1)


def from_ms(ms: int) -> datetime:
    """An aware UTC datetime from Unix milliseconds, exactly (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def bucket_of(moment: datetime) -> datetime:
    """The start of the 15-minute UTC bucket holding `moment`."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def record_time(record: Record) -> datetime:
    """The time a record is filed under: a count's period start, otherwise its instant."""
    return from_ms(record.start_ms if isinstance(record, Count) else record.at_ms)


@dataclass(slots=True)
class CountTotals:
    """People in and out."""

    entries: int = 0
    exits: int = 0


@dataclass(slots=True)
class SalesTotals:
    """Transactions of one terminal and currency, by kind; amounts in minor units, all positive."""

    sales_count: int = 0
    sales_amount: int = 0
    refunds_count: int = 0
    refunds_amount: int = 0
    voids_count: int = 0
    voids_amount: int = 0
    items: int = 0

    def add(self, txn: Transaction) -> None:
        """Count one transaction under its kind."""
        if txn.kind == "sale":
            self.sales_count += 1
            self.sales_amount += txn.amount_minor
            self.items += txn.items
        elif txn.kind == "refund":
            self.refunds_count += 1
            self.refunds_amount += txn.amount_minor
        else:
            self.voids_count += 1
            self.voids_amount += txn.amount_minor

    def values(self) -> tuple[int, int, int, int, int, int, int]:
        """The totals in the column order of sales_15m and sales_day."""
        return (
            self.sales_count, self.sales_amount, self.refunds_count, self.refunds_amount,
            self.voids_count, self.voids_amount, self.items,
        )


SensorKey = tuple[str, str]  # (kind: "sensor" | "terminal", name)


@dataclass(slots=True)
class Rollups:
    """Everything one batch adds to the rollup tables and to the sensors table, keyed as the tables are."""

    counts_15m: dict[tuple[datetime, str, str], CountTotals] = field(default_factory=dict)
    counts_day: dict[tuple[date, str, str], CountTotals] = field(default_factory=dict)
    sales_15m: dict[tuple[datetime, str, str], SalesTotals] = field(default_factory=dict)
    sales_day: dict[tuple[date, str, str], SalesTotals] = field(default_factory=dict)
    # (kind, name) -> (earliest, latest) record time seen in this batch.
    sensors: dict[SensorKey, tuple[datetime, datetime]] = field(default_factory=dict)
    # (local day, sensor) -> bit mask of the day's quarters the sensor reported for.
    coverage: dict[tuple[date, str], int] = field(default_factory=dict)
    # (local day, sensor) -> the quarters among those covered only as part of a spread count.
    spread: dict[tuple[date, str], int] = field(default_factory=dict)
    # sensor -> what it reports and the (earliest, latest) time of its counts and occupancy readings.
    reporting: dict[str, SensorReport] = field(default_factory=dict)
    occupancy_15m: dict[tuple[datetime, str, str], int] = field(default_factory=dict)
    occupancy_day: dict[tuple[date, str, str], int] = field(default_factory=dict)
    # The quarters holding counts: the estimated occupancy of their reset periods must be replayed.
    count_quarters: set[datetime] = field(default_factory=set)
    # Gap, offline and online events, in seq order.
    events: list[SensorEvent] = field(default_factory=list)
    # The earliest and latest instants the batch's data touches (for cache invalidation).
    span: tuple[datetime, datetime] | None = None


@dataclass(slots=True)
class SensorReport:
    """What one sensor's counts and occupancy readings in a batch say about it."""

    first: datetime
    last: datetime
    counts: bool = False
    occupancy: bool = False


OUTAGE_EVENTS = frozenset({"gap", "offline", "online"})


def compute(records: Iterable[Record], zone: ZoneInfo) -> Rollups:
    """Sum `records` into rollup rows; `zone` is the site's, for local days."""
    out = Rollups()
    days = _DayStarts(zone)
    for record in records:
        moment = record_time(record)
        if isinstance(record, Count):
            bucket = out.counts_15m.setdefault((bucket_of(moment), record.sensor, record.line), CountTotals())
            day = out.counts_day.setdefault((moment.astimezone(zone).date(), record.sensor, record.line), CountTotals())
            for totals in (bucket, day):
                totals.entries += record.entries
                totals.exits += record.exits
            _seen(out, ("sensor", record.sensor), moment)
            end = from_ms(record.end_ms)
            quarter = bucket_of(moment)
            out.count_quarters.add(quarter)
            if (record.entries or record.exits) and end - moment > SPREAD_OVER:
                _cover_spread(out, days, record.sensor, quarter, end)
            else:
                while quarter < end:
                    _cover(out, days, record.sensor, quarter)
                    quarter += BUCKET
            _report(out, record.sensor, moment, counts=True)
            _extend(out, moment, end)
        elif isinstance(record, Transaction):
            day_key = (moment.astimezone(zone).date(), record.terminal, record.currency)
            out.sales_15m.setdefault((bucket_of(moment), record.terminal, record.currency), SalesTotals()).add(record)
            out.sales_day.setdefault(day_key, SalesTotals()).add(record)
            _seen(out, ("terminal", record.terminal), moment)
            _extend(out, moment, moment)
        elif isinstance(record, Occupancy):
            _seen(out, ("sensor", record.sensor), moment)
            quarter = bucket_of(moment)
            _cover(out, days, record.sensor, quarter)
            _report(out, record.sensor, moment, occupancy=True)
            _peak(out.occupancy_15m, (quarter, record.sensor, record.zone), record.value)
            _peak(out.occupancy_day, (moment.astimezone(zone).date(), record.sensor, record.zone), record.value)
            _extend(out, moment, moment)
        elif isinstance(record, SensorEvent):
            if record.sensor != "agent":
                # Events about the agent itself (sensor "agent") name no device.
                _seen(out, ("sensor", record.sensor), moment)
            if record.kind in OUTAGE_EVENTS:
                out.events.append(record)
    return out


class _DayStarts:
    """Local days of one zone and their first instants, memoised for a batch."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._starts: dict[date, datetime] = {}

    def locate(self, quarter: datetime) -> tuple[date, int]:
        """The local day holding `quarter` and the quarter's index in it (0 for the first)."""
        day = quarter.astimezone(self.zone).date()
        start = self._starts.get(day)
        if start is None:
            start = datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)
            self._starts[day] = start
        return day, (quarter - start) // BUCKET


def _cover(out: Rollups, days: _DayStarts, sensor: str, quarter: datetime) -> None:
    day, index = days.locate(quarter)
    key = (day, sensor)
    out.coverage[key] = out.coverage.get(key, 0) | (1 << index)


def _cover_spread(out: Rollups, days: _DayStarts, sensor: str, first: datetime, end: datetime) -> None:
    """The quarters of a spread count: covered and marked spread, when they all lie in one local day."""
    located = []
    quarter = first
    while quarter < end:
        located.append(days.locate(quarter))
        quarter += BUCKET
    if len({day for day, _ in located}) != 1:
        return
    for day, index in located:
        key = (day, sensor)
        out.coverage[key] = out.coverage.get(key, 0) | (1 << index)
        out.spread[key] = out.spread.get(key, 0) | (1 << index)


def _report(out: Rollups, sensor: str, moment: datetime, *, counts: bool = False, occupancy: bool = False) -> None:
    report = out.reporting.get(sensor)
    if report is None:
        report = out.reporting[sensor] = SensorReport(moment, moment)
    report.first, report.last = min(report.first, moment), max(report.last, moment)
    report.counts |= counts
    report.occupancy |= occupancy


def _peak(peaks: dict[Any, int], key: Any, value: int) -> None:
    peaks[key] = max(peaks.get(key, value), value)


def _extend(out: Rollups, first: datetime, last: datetime) -> None:
    out.span = (first, last) if out.span is None else (min(out.span[0], first), max(out.span[1], last))


def _seen(out: Rollups, key: SensorKey, moment: datetime) -> None:
    first, last = out.sensors.get(key, (moment, moment))
    out.sensors[key] = (min(first, moment), max(last, moment))
