"""Times as devices write them, read as Unix milliseconds by a profile's `[time]` rules. Pure: no I/O, no state.

UTC or an offset as written; a local time without an offset is read in the site's zone
(`naive = "site"`: a repeated hour when the clocks go back takes the device's DST flag when the
profile names one, else the `ambiguous` rule, by default the first occurrence; a time in the hour
the clocks skip is read with the offset in force before the change, as a clock not yet moved
forward would mean it), or with the device's own fixed offset plus DST hours (`naive =
"offset"`), or as UTC (`naive = "utc"`); see firmware-adapters/README.md. Daily counters also
need the local day a reading belongs to and when it began (`local_day`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from footfall.agent.decode.errors import show
from footfall.agent.decode.fields import number

if TYPE_CHECKING:
    from footfall.agent.decode.profile import TimeSection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_time(raw: Any, rules: TimeSection, zone: ZoneInfo | None, hints: Mapping[str, Any]) -> tuple[int, int | None]:
    """(Unix ms, the UTC offset in seconds the device wrote or implied, or None); ValueError if unreadable.

    `hints`: the device's own offset and DST flag for this item, where the profile says it writes them.
    """
    fmt = rules.format
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(raw, str):
            raw = number(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(
                f"must be a number of {'seconds' if fmt == 'epoch_s' else 'milliseconds'} since 1970, got {show(raw)}"
            )
        return (round(raw * 1000) if fmt == "epoch_s" else int(raw)), None
    what = "an ISO 8601 time such as 2026-03-08T10:00:00+01:00" if fmt == "iso8601" else f"a time like {fmt}"
    if not isinstance(raw, str):
        raise ValueError(f"must be {what}, got {show(raw)}")
    try:
        when = datetime.fromisoformat(raw.strip()) if fmt == "iso8601" else datetime.strptime(raw.strip(), fmt)
    except ValueError:
        raise ValueError(f"must be {what}, got {show(raw)}") from None
    if when.tzinfo is None:
        when = _localize(when, raw, rules, zone, hints)
    offset = when.utcoffset()
    return (when - _EPOCH) // timedelta(milliseconds=1), None if offset is None else int(offset.total_seconds())


def _localize(
    when: datetime, raw: str, rules: TimeSection, zone: ZoneInfo | None, hints: Mapping[str, Any]
) -> datetime:
    """A local time without offset, made aware by the profile's `[time] naive` rule."""
    naive = rules.naive
    if naive == "utc":
        return when.replace(tzinfo=UTC)
    if naive == "offset":
        if hints.get("offset") is None:
            raise ValueError(f"{raw!r} has no UTC offset and the device's offset ({rules.offset}) is missing")
        hours = _hours(hints["offset"], rules.offset) + _hours(hints.get("dst") or 0, rules.dst)
        return when.replace(tzinfo=timezone(timedelta(hours=hours)))
    if naive != "site":
        raise ValueError(f"{raw!r} has no UTC offset; the device must send one (Z or +01:00)")
    if zone is None:
        raise ValueError(f"{raw!r} is local time and no time zone is known; set [agent].timezone or enroll")
    first, second = when.replace(tzinfo=zone, fold=0), when.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    rule = rules.ambiguous
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != when:
        # In the hour the clocks skip: fold=0 reads it with the offset before the change.
        if rule == "reject":
            raise ValueError(f"{raw!r} does not exist in {zone.key}: the clocks went forward over it")
        return first
    flag = hints.get("dst")
    if flag is not None:
        in_dst = _truthy(flag)
        return first if bool(first.dst()) == in_dst else second
    if rule == "reject":
        raise ValueError(
            f"{raw!r} happened twice in {zone.key} (the clocks went back) and the device gives no DST flag"
        )
    return first if rule == "earlier" else second


def _hours(raw: Any, path: str) -> float:
    """An offset in hours as a device writes it: 1, "+8", "-5", "5.5", "+05:30", "true" (a DST flag: 1 hour)."""
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    text = str(raw).strip()
    if text.lower() in ("true", "false"):
        return 1.0 if text.lower() == "true" else 0.0
    match = re.fullmatch(r"([+-]?)(\d{1,2}):(\d{2})", text)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return sign * (int(match.group(2)) + int(match.group(3)) / 60)
    try:
        hours = float(text)
    except ValueError:
        raise ValueError(f"the device's offset at {path} must be hours such as +1 or -5, got {show(raw)}") from None
    if not -14 <= hours <= 14:
        raise ValueError(f"the device's offset at {path} is {hours} hours, beyond any time zone")
    return hours


def _truthy(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off", ""):
        return False
    try:
        return float(text) != 0
    except ValueError:
        raise ValueError(f"a DST flag must be true/false or a number of hours, got {show(raw)}") from None


def local_day(ms: int, offset: int | None, zone: ZoneInfo | None) -> tuple[str, int]:
    """The local day of an instant (as the device keeps it) and when that day started, for daily counters."""
    instant = datetime.fromtimestamp(ms / 1000, UTC)
    zone_offset = instant.astimezone(zone).utcoffset() if zone is not None else None
    if offset is None and zone_offset is None:
        raise ValueError("a daily counter needs to know where the day starts: send an offset, or set [agent].timezone")
    if offset is not None and (zone_offset is None or int(zone_offset.total_seconds()) != offset):
        tz: Any = timezone(timedelta(seconds=offset))
    else:
        tz = zone
    local: date = instant.astimezone(tz).date()
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return local.isoformat(), (midnight - _EPOCH) // timedelta(milliseconds=1)

