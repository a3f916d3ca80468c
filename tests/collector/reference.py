"""Plain-Python reference answers for the metrics API, computed straight from generated readings.

Nothing here imports the collector: local periods come from zoneinfo alone, so a test comparing
the API with these numbers checks the rollups, the bucket arithmetic and the completeness rules
against an independent computation.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from footfall.protocol.records import Count, Occupancy, Record, SensorEvent, Transaction

from tests.fixtures.collector import EnrolledAgent, RunningCollector, ms

QUARTER = timedelta(minutes=15)


@dataclass
class Store:
    """One site's generated readings."""

    site: str
    zone: ZoneInfo
    sensors: tuple[str, ...] = ("door-a", "door-b")
    visitors: str = "entries"
    counts: list[tuple[str, datetime, int, int]] = field(default_factory=list)  # sensor, quarter start, in, out
    sales: list[tuple[datetime, str, int, str, int]] = field(default_factory=list)  # at, kind, amount, currency, items
    occupancy: list[tuple[str, datetime, int]] = field(default_factory=list)  # zone, at, value
    events: list[SensorEvent] = field(default_factory=list)
    hours: dict[int, list[tuple[time, time]]] | None = None  # weekday -> intervals
    exceptions: dict[date, list[tuple[time, time]]] = field(default_factory=dict)
    reset: time = time(4)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def generate(store: Store, first: date, last: date, *, seed: int, skip: set[tuple[str, datetime]] | None = None,
             currencies: tuple[str, ...] = ("EUR",), sales_per_day: int = 20) -> None:
    """Random counts every quarter for every sensor, and random sales, over local days first..last."""
    rng = random.Random(seed)
    moment, end = day_start(first, store.zone), day_start(last + timedelta(days=1), store.zone)
    while moment < end:
        for sensor in store.sensors:
            if skip and (sensor, moment) in skip:
                continue
            store.counts.append((sensor, moment, rng.randint(0, 9), rng.randint(0, 9)))
        moment += QUARTER
    day = first
    while day <= last:
        start = day_start(day, store.zone)
        length = int((day_start(day + timedelta(days=1), store.zone) - start).total_seconds())
        for _ in range(sales_per_day):
            at = start + timedelta(seconds=rng.randrange(length))
            kind = rng.choice(["sale"] * 8 + ["refund", "void"])
            store.sales.append((at, kind, rng.randint(100, 20000), rng.choice(currencies),
                                rng.randint(1, 5) if kind == "sale" else 0))
        day += timedelta(days=1)


def records(store: Store, first_seq: int = 1) -> list[Record]:
    """The store's readings as protocol records, in time order, with seqs from `first_seq`."""
    out: list[tuple[datetime, Any]] = []
    for sensor, start, entries, exits in store.counts:
        out.append((start, ("count", sensor, start, entries, exits)))
    for i, (at, kind, amount, currency, items) in enumerate(store.sales):
        out.append((at, ("sale", at, kind, amount, currency, items, i)))
    for zone_name, at, value in store.occupancy:
        out.append((at, ("occ", zone_name, at, value)))
    out.sort(key=lambda item: item[0])
    result: list[Record] = []
    seq = first_seq
    for _, item in out:
        if item[0] == "count":
            _, sensor, start, entries, exits = item
            result.append(Count(sensor, "main", ms(start), ms(start + QUARTER), entries, exits, seq=seq))
        elif item[0] == "sale":
            _, at, kind, amount, currency, items, i = item
            result.append(Transaction("pos1", f"t{i}", ms(at), kind, amount, currency, items, seq=seq))
        else:
            _, zone_name, at, value = item
            result.append(Occupancy("occ-1", zone_name, ms(at), value, seq=seq))
        seq += 1
    return result


async def upload(collector: RunningCollector, agent: EnrolledAgent, batch: list[Record], size: int = 5000) -> None:
    """Upload records in batches."""
    for i in range(0, len(batch), size):
        answer = await collector.upload(agent, batch[i:i + size])
        assert answer.status == 200, answer.body


def key_of(moment: datetime, zone: ZoneInfo, granularity: str, week_start: int = 1) -> Any:
    """The local bucket holding an instant: (wall-clock start, fold) for 15m/hour, the first date otherwise."""
    local = moment.astimezone(zone)
    if granularity == "15m":
        return (local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0, tzinfo=None),
                local.fold)
    if granularity == "hour":
        return (local.replace(minute=0, second=0, microsecond=0, tzinfo=None), local.fold)
    day = local.date()
    if granularity == "week":
        return day - timedelta(days=(day.isoweekday() - week_start) % 7)
    if granularity == "month":
        return day.replace(day=1)
    return day


def trading(store: Store, moment: datetime) -> bool:
    if store.hours is None:
        return True
    local = moment.astimezone(store.zone)
    intervals = store.exceptions.get(local.date(), store.hours.get(local.weekday(), []))
    return any(a <= local.time().replace(tzinfo=None) < b if b != time(0) else a <= local.time()
               for a, b in intervals)


@dataclass
class Expect:
    """Reference sums for one bucket."""

    entries: int = 0
    exits: int = 0
    visitors2: int = 0
    sales: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0]))
    reported: int = 0
    expected: int = 0
    occupancy: int = 0
    gap: bool = False

    def metrics(self) -> dict[str, Any]:
        """The API's metric values for these sums."""
        transactions = {c: v[0] - v[4] for c, v in self.sales.items()}
        revenue = {c: v[1] - v[3] - v[5] for c, v in self.sales.items()}
        total = sum(transactions.values())
        items = sum(v[6] for v in self.sales.values())
        visitors = self.visitors2 / 2
        return {
            "entries": self.entries, "exits": self.exits, "visitors": visitors, "transactions": total,
            "revenue": {c: r for c, r in revenue.items()},
            "conversion": round(total / visitors, 6) if visitors else None,
            "atv": {c: round(revenue[c] / transactions[c], 6) if transactions[c] else None for c in revenue},
            "items_per_transaction": round(items / total, 6) if total else None,
            "completeness": round(min(1, self.reported / self.expected), 6) if self.expected else None,
            "gap": self.gap,
        }


def reference(
    stores: list[Store], start: date, end: date, granularity: str, *, trading_only: bool = False,
    week_start: int = 1, windows: dict[str, list[tuple[datetime, datetime]]] | None = None,
) -> dict[Any, Expect]:
    """Reference sums per local bucket key over local dates [start, end) of every store, added up by key.

    A sensor is expected from the quarter of its first reading on (it is learnt from the data).
    """
    out: dict[Any, Expect] = defaultdict(Expect)
    for store in stores:
        lo, hi = day_start(start, store.zone), day_start(end, store.zone)

        def keep(moment: datetime, store: Store = store, lo: datetime = lo, hi: datetime = hi) -> bool:
            return lo <= moment < hi and (not trading_only or trading(store, moment))

        firsts: dict[str, datetime] = {}
        for sensor, quarter, _, _ in store.counts:
            firsts[sensor] = min(firsts.get(sensor, quarter), quarter)
        for _, at, _ in store.occupancy:
            firsts["occ-1"] = min(firsts.get("occ-1", bucket_start(at)), bucket_start(at))
        moment = lo
        while moment < hi:  # every bucket exists; every quarter expects the sensors that started reporting
            if keep(moment):
                expected = sum(1 for first in firsts.values() if first <= moment)
                out[key_of(moment, store.zone, granularity, week_start)].expected += expected
            else:
                out.setdefault(key_of(moment, store.zone, granularity, week_start), Expect())
            moment += QUARTER
        for _sensor, quarter, entries, exits in store.counts:
            if not keep(quarter):
                continue
            bucket = out[key_of(quarter, store.zone, granularity, week_start)]
            bucket.entries += entries
            bucket.exits += exits
            bucket.visitors2 += {"entries": 2 * entries, "exits": 2 * exits, "mean": entries + exits}[store.visitors]
            bucket.reported += 1
        for at, kind, amount, currency, items in store.sales:
            if not keep(bucket_start(at)):
                continue
            row = out[key_of(at, store.zone, granularity, week_start)].sales[currency]
            index = {"sale": 0, "refund": 2, "void": 4}[kind]
            row[index] += 1
            row[index + 1] += amount
            row[6] += items
        for first, last in (windows or {}).get(store.site, []):
            moment = lo
            while moment < hi:
                if moment < max(last, first + timedelta(microseconds=1)) and moment + QUARTER > first:
                    out[key_of(moment, store.zone, granularity, week_start)].gap = True
                moment += QUARTER
    return out


def bucket_start(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def balance_by_quarter(store: Store, lo: datetime, hi: datetime) -> dict[datetime, int]:
    """The estimated occupancy after each quarter in [lo, hi): entries - exits summed from the last reset, >= 0."""
    net: dict[datetime, int] = defaultdict(int)
    for _, quarter, entries, exits in store.counts:
        net[quarter] += entries - exits
    out: dict[datetime, int] = {}
    level = 0
    moment = lo - timedelta(days=2)
    while moment < hi:
        local = moment.astimezone(store.zone)
        if local.time() == store.reset and local.fold == 0:
            level = 0
        level = max(0, level + net.get(moment, 0))
        if moment >= lo:
            out[moment] = level
        moment += QUARTER
    return out


def api_key(bucket: dict[str, Any], zone: ZoneInfo | None, granularity: str, week_start: int = 1) -> Any:
    """The reference key of an API bucket (one site: its start instant; a group: its wall clock and fold)."""
    if zone is not None:
        return key_of(datetime.fromisoformat(bucket["start"]), zone, granularity, week_start)
    start = datetime.fromisoformat(bucket["start"])
    if granularity in ("15m", "hour"):
        return (start, bucket["fold"])
    return start.date()


def check(answer: dict[str, Any], expected: dict[Any, Expect], zone: ZoneInfo | None, granularity: str,
          week_start: int = 1) -> None:
    """Every API bucket equals its reference, and the API has exactly the reference's buckets."""
    got = {api_key(b, zone, granularity, week_start): b for b in answer["buckets"]}
    assert sorted(got, key=_sort) == sorted(expected, key=_sort), (sorted(got, key=_sort)[:5],
                                                                     sorted(expected, key=_sort)[:5])
    for key, want in expected.items():
        bucket = got[key]
        values = want.metrics()
        for metric, value in values.items():
            if metric not in bucket:
                continue
            if metric in ("revenue", "atv"):
                assert {c: v for c, v in bucket[metric].items() if c in value} == value, (key, metric)
                assert all(v in (0, None) for c, v in bucket[metric].items() if c not in value), (key, metric)
            else:
                assert bucket[metric] == value, (key, metric, bucket[metric], value)


def _sort(key: Any) -> Any:
    if isinstance(key, tuple):
        return (key[0], key[1])
    return (datetime.combine(key, time(0)), 0)
