"""The query string of the metrics endpoints, checked: 400 with a code and a message for every bad parameter.

| parameter | values | default |
|---|---|---|
| `from`, `to` | local date `2026-03-08`; a site: or ISO datetime with offset; a group: or local datetime | required |
| `granularity` | `15m`, `hour`, `day`, `week`, `month` | `day` |
| `metrics` | comma-separated names from collector/measures.py | all |
| `trading_hours` | `true` counts only the sites' trading hours | `false` |
| `compare` | `previous` or `last_year` | none |
| `week_start` | `monday` ... `sunday` (or 1-7) for week buckets | the organization's |
| `format` | `json` or `csv` (else the Accept header decides) | json |

`from` is inclusive, `to` exclusive; both must start a bucket of the granularity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

from ..errors import ApiError, BadRequest
from ..localtime import check_year, parse_bound
from ..measures import METRICS
from ..periods import (
    COMPARISONS,
    GRANULARITIES,
    MAX_RANGE,
    WEEKDAYS,
    floor_wall,
    is_aligned,
    to_wall_bound,
    wall_length,
)
from ..sitesettings import SiteInfo

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")
FORMATS = ("json", "csv")


class NotAcceptable(ApiError):
    """No representation the client accepts."""

    status = 406
    code = "not_acceptable"


@dataclass(frozen=True, slots=True)
class Options:
    """Everything but the bounds."""

    granularity: str
    metrics: tuple[str, ...]
    trading_hours: bool
    compare: str | None
    week_start: int


def options(
    params: Mapping[str, str], org_week_start: int, *, granularities: tuple[str, ...] = GRANULARITIES
) -> Options:
    """The checked options of a metrics query."""
    granularity = params.get("granularity", "day")
    if granularity not in granularities:
        raise BadRequest(
            f"granularity must be one of {', '.join(granularities)}, got {granularity!r}", code="bad_granularity"
        )
    metrics = tuple(METRICS)
    if params.get("metrics"):
        asked = [m.strip() for m in params["metrics"].split(",") if m.strip()]
        unknown = [m for m in asked if m not in METRICS]
        if unknown or not asked:
            raise BadRequest(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}", code="bad_metric")
        metrics = tuple(m for m in METRICS if m in asked)
    trading = params.get("trading_hours", "false").lower()
    if trading not in _TRUE + _FALSE:
        raise BadRequest(f"trading_hours must be true or false, got {params['trading_hours']!r}", code="bad_parameter")
    compare = params.get("compare") or None
    if compare is not None and compare not in COMPARISONS:
        raise BadRequest(f"compare must be one of {', '.join(COMPARISONS)}, got {compare!r}", code="bad_compare")
    week_start = org_week_start
    if params.get("week_start"):
        text = params["week_start"].lower()
        if text in WEEKDAYS:
            week_start = WEEKDAYS.index(text) + 1
        elif text in ("1", "2", "3", "4", "5", "6", "7"):  # not isdigit(): it takes "²", which int() refuses
            week_start = int(text)
        else:
            raise BadRequest(
                f"week_start must be a weekday (monday ... sunday) or 1-7, got {params['week_start']!r}",
                code="bad_parameter",
            )
    return Options(granularity, metrics, trading in _TRUE, compare, week_start)


def site_bounds(params: Mapping[str, str], site: SiteInfo, opts: Options) -> tuple[datetime, datetime]:
    """Wall-clock bounds of a one-site query: dates, or ISO datetimes with an offset, on bucket starts."""
    instants: dict[str, datetime] = {}
    for name in ("from", "to"):
        text = _required(params, name)
        try:
            instants[name] = parse_bound(text, site.zone)
        except ValueError as exc:
            raise BadRequest(f"`{name}`: {exc}", code="bad_date") from None
    for name, instant in instants.items():
        if not is_aligned(instant, site.zone, opts.granularity, opts.week_start):
            raise BadRequest(
                f"`{name}` ({instant.astimezone(site.zone).isoformat()} local) is not the start of a local "
                f"{_unit(opts)}",
                code="unaligned_range",
            )
    if instants["to"] <= instants["from"]:
        raise BadRequest("`to` must be after `from` (`from` is inclusive, `to` exclusive)", code="bad_range")
    start = to_wall_bound(instants["from"], site.zone, opts.granularity, opts.week_start)
    end = to_wall_bound(instants["to"], site.zone, opts.granularity, opts.week_start)
    _check_length(start, end, opts)
    return start, end


def group_bounds(params: Mapping[str, str], opts: Options) -> tuple[datetime, datetime]:
    """Wall-clock bounds of a group query: local dates or local datetimes without offset, read in each site's zone."""
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        text = _required(params, name).strip()
        try:
            if _DATE.fullmatch(text):
                value = datetime.combine(date.fromisoformat(text), time(0))
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            raise BadRequest(
                f"`{name}`: {text!r} is not a local date (2026-03-08) or local time (2026-03-08T10:00)", code="bad_date"
            ) from None
        try:
            check_year(value, text)
        except ValueError as exc:
            raise BadRequest(f"`{name}`: {exc}", code="bad_date") from None
        if value.tzinfo is not None:
            raise BadRequest(
                f"`{name}`: a group of sites spans time zones; give a local date or time without an offset",
                code="bad_date",
            )
        bounds[name] = value
    start, end = bounds["from"], bounds["to"]
    if end <= start:
        raise BadRequest("`to` must be after `from` (`from` is inclusive, `to` exclusive)", code="bad_range")
    for name, value in bounds.items():
        if _floor(value, opts) != value:
            raise BadRequest(f"`{name}` ({value.isoformat()}) is not the start of a local {_unit(opts)}",
                             code="unaligned_range")
    _check_length(start, end, opts)
    return start, end


def _floor(value: datetime, opts: Options) -> datetime:
    return floor_wall(value, opts.granularity, opts.week_start)


def _unit(opts: Options) -> str:
    if opts.granularity == "week":
        return f"week (weeks start on {WEEKDAYS[opts.week_start - 1].capitalize()})"
    return {"15m": "quarter hour"}.get(opts.granularity, opts.granularity)


def _check_length(start: datetime, end: datetime, opts: Options) -> None:
    limit = MAX_RANGE[opts.granularity]
    if wall_length(start, end) > limit:
        hint = "split the range or use a coarser granularity" if opts.granularity != "month" else "split the range"
        raise BadRequest(f"a {opts.granularity} query covers at most {limit.days} days; {hint}", code="range_too_large")


def _required(params: Mapping[str, str], name: str) -> str:
    text = params.get(name)
    if not text:
        raise BadRequest(
            f"`{name}` is required: a local date (2026-03-08) or a date and time", code="bad_range"
        )
    return text


def response_format(params: Mapping[str, str], accept: str) -> str:
    """`json` or `csv`: the `format` parameter, else the Accept header; 406 when neither can be given."""
    asked = params.get("format")
    if asked:
        if asked not in FORMATS:
            raise BadRequest(f"format must be json or csv, got {asked!r}", code="bad_format")
        return asked
    if not accept.strip():
        return "json"
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for media in types:
        if media in ("application/json", "application/*", "*/*"):
            return "json"
        if media in ("text/csv", "text/*"):
            return "csv"
    raise NotAcceptable(f"this endpoint answers application/json or text/csv, not {accept!r}")
