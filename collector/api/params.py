"""The query string of the analysts' routes: one declaration per route, which both checks requests and documents them.

A route declares its parameters as `QueryParam`s (name, JSON schema, description); the tenancy
gate (collector/tenancy.py) checks every request against the declaration before the handler runs,
and the OpenAPI document (collector/api/openapi.py) is built from the same objects, so the two
cannot disagree. A parameter the route does not declare is a 400 `unknown_parameter` naming the
nearest declared one; a value outside its schema is a 400 with the parameter's code. The schema
keywords understood are the ones used here: type, enum, pattern, minLength, maxLength, minimum,
maximum. What a schema cannot say (a range's end after its start, bounds on bucket starts) the
handlers check after, with the codes each operation documents under `x-rule-errors`.

The metrics routes take:

| parameter | values | default |
|---|---|---|
| `from`, `to` | local date `2026-03-08`; a site: or ISO datetime with offset; a group: or local datetime | required |
| `granularity` | `15m`, `hour`, `day`, `week`, `month` | `day` |
| `metrics` | comma-separated names from collector/measures.py | all |
| `trading_hours` | `true` counts only the sites' trading hours | `false` |
| `compare` | `previous` or `last_year` | none |
| `week_start` | `monday` ... `sunday` (or 1-7) for week buckets | the organization's |
| `currency` | an ISO 4217 code: money in that currency only, and the CSV's money columns in it | every currency |
| `format` | `json` or `csv` (else the Accept header decides) | json |

`from` is inclusive, `to` exclusive; both must start a bucket of the granularity, in 1970-2099.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from footfall.protocol.records import currency_problem
from multidict import MultiMapping

from ..errors import ApiError, BadRequest
from ..http import shown
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
_FALSE = ("false", "0", "no")
FORMATS = ("json", "csv")

# Patterns in the dialect JSON Schema and Python share: anchored, ASCII classes only (no \d, \w, \s).
# Dates are exact calendar dates of 1970-2099 (leap days included), so that a value the pattern
# admits always parses, and none is near the ends of what Python's datetime can hold.
_YEAR = "(19[7-9][0-9]|20[0-9][0-9])"
_LEAP_YEAR = "(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26]))"
_MONTH_DAY = "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
DATE = f"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
# An offset; a space stands for a `+` that an unencoded query string turned into one.
_OFFSET = "(Z|[+ -]([01][0-9]|2[0-3]):[0-5][0-9])"
DATE_PATTERN = f"^{DATE}$"
INSTANT_PATTERN = f"^{DATE}(T{_TIME}{_OFFSET})?$"
LOCAL_PATTERN = f"^{DATE}(T{_TIME})?$"
# An instant in a JSON body: a date and time with its offset.
DATETIME_PATTERN = f"^{DATE}T{_TIME}(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
SITE_ID = "[a-z0-9][a-z0-9._-]{0,62}"
SITE_ID_PATTERN = f"^{SITE_ID}$"
SITE_LIST_PATTERN = f"^{SITE_ID}( *, *{SITE_ID})*$"
TAG = "[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,99}"
TAG_LIST_PATTERN = f"^{TAG}(,{TAG})*$"
# Free text (a version string, a sensor name): anything but NUL, which no identifier holds.
TEXT_PATTERN = "^[^\\u0000]*$"
# A duration (footfall/units.py) of more than zero and less than 10^8 of its unit, which a timedelta holds.
DURATION_PATTERN = "^([1-9][0-9]{0,7}(\\.[0-9]{1,6})?|0\\.[0-9]{0,5}[1-9])(ms|s|m|h|d)?$"
# A database id or version: a positive bigint, written plainly.
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_METRIC = "(" + "|".join(METRICS) + ")"
_BOOLEAN = {"type": "string", "enum": [*_TRUE, *_FALSE]}


@dataclass(frozen=True, slots=True)
class QueryParam:
    """One query parameter of a route: its name, JSON schema, what it means, and the code of a bad value."""

    name: str
    schema: Mapping[str, Any]
    description: str
    required: bool = False
    repeatable: bool = False
    code: str = "bad_parameter"

    def document(self) -> dict[str, Any]:
        """The OpenAPI parameter object."""
        doc: dict[str, Any] = {"name": self.name, "in": "query", "required": self.required,
                               "schema": dict(self.schema), "description": self.description}
        if self.repeatable:
            doc["schema"] = {"type": "array", "items": dict(self.schema)}
            doc["style"], doc["explode"] = "form", True
        return doc


def check_query(query: MultiMapping[str], declared: tuple[QueryParam, ...]) -> None:
    """400 unless every parameter of `query` is declared, given once (unless repeatable) and within its schema."""
    names = {p.name for p in declared}
    unknown = sorted({k for k in query if k not in names})
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hints.append(f"`{name}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        takes = f"it takes {', '.join(f'`{n}`' for n in sorted(names))}" if names else "it takes none"
        raise BadRequest(f"unknown query parameter {', '.join(hints)}: {takes}", code="unknown_parameter")
    for param in declared:
        values = query.getall(param.name, [])
        if not values:
            if param.required:
                raise BadRequest(f"`{param.name}` is required: {param.description}", code="missing_parameter")
            continue
        if len(values) > 1 and not param.repeatable:
            raise BadRequest(f"`{param.name}` is given {len(values)} times; give it once", code=param.code)
        for value in values:
            problem = conforms(value, param.schema)
            if problem:
                raise BadRequest(f"`{param.name}` {problem}; {param.description}", code=param.code)


def matches(pattern: str, value: str) -> bool:
    """Whether `value` matches a JSON Schema `pattern` of this module, whole (a trailing newline does not pass)."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None


def path_id(text: str, name: str) -> int:
    """A path segment under ID_SCHEMA as an int; 400 naming the segment otherwise."""
    problem = conforms(text, ID_SCHEMA)
    if problem:
        raise BadRequest(f"{name} {problem}", code="bad_parameter")
    return int(text)


def conforms(value: str, schema: Mapping[str, Any]) -> str | None:
    """What is wrong with a query (or path) value under `schema`, or None when it conforms."""
    if "enum" in schema and value not in schema["enum"]:
        close = difflib.get_close_matches(value, [str(v) for v in schema["enum"]], n=1)
        return f"is {shown(value)}" + (f" (did you mean {close[0]!r}?)" if close else "") + \
            f", not one of {', '.join(map(str, schema['enum']))}"
    kind = schema.get("type", "string")
    if kind == "integer":
        # At most 19 digits: a bigint, and far below the length at which int() refuses a string.
        if not re.fullmatch("-?(0|[1-9][0-9]{0,18})", value):
            return f"must be a whole number of at most 19 digits, got {shown(value)}"
        number = int(value)
        if number < schema.get("minimum", number) or number > schema.get("maximum", number):
            return f"must be from {schema.get('minimum', '-∞')} to {schema.get('maximum', '∞')}, got {number}"
        return None
    if len(value) < schema.get("minLength", 0):
        return "must not be empty" if not value else f"must be at least {schema['minLength']} characters"
    if len(value) > schema.get("maxLength", len(value)):
        return f"must be at most {schema['maxLength']} characters"
    if "pattern" in schema and not matches(schema["pattern"], value):
        return f"has an unexpected form: {shown(value)}"
    return None


def _param(name: str, schema: Mapping[str, Any], description: str, **extra: Any) -> QueryParam:
    return QueryParam(name, schema, description, **extra)


def bound_params(pattern: str, what: str) -> tuple[QueryParam, QueryParam]:
    """`from` and `to`, required, with the pattern their values take."""
    schema = {"type": "string", "pattern": pattern}
    return (
        _param("from", schema, f"inclusive: {what}", required=True, code="bad_date"),
        _param("to", schema, f"exclusive: {what}", required=True, code="bad_date"),
    )


SITE_BOUNDS = bound_params(
    INSTANT_PATTERN, "a local date (2026-03-08) or an ISO datetime with its offset (2026-03-08T10:00+01:00)"
)
GROUP_BOUNDS = bound_params(
    LOCAL_PATTERN, "a local date (2026-03-08) or a local date and time (2026-03-08T10:00), read in each site's zone"
)
FORMAT = _param("format", {"type": "string", "enum": list(FORMATS)}, "json or csv (else the Accept header decides)",
                code="bad_format")
METRIC_OPTIONS = (
    _param("granularity", {"type": "string", "enum": list(GRANULARITIES)}, "the bucket size (day)",
           code="bad_granularity"),
    _param("metrics", {"type": "string", "pattern": f"^{_METRIC}( *, *{_METRIC})*$"},
           f"comma-separated, from: {', '.join(METRICS)} (all)", code="bad_metric"),
    _param("trading_hours", _BOOLEAN, "true counts only the sites' trading hours (false)"),
    _param("compare", {"type": "string", "enum": list(COMPARISONS)}, "a comparison range answered beside",
           code="bad_compare"),
    _param("week_start", {"type": "string", "enum": [*WEEKDAYS, *map(str, range(1, 8))]},
           "the first day of week buckets: monday ... sunday or 1-7 (the organization's)"),
    _param("currency", {"type": "string", "pattern": "^[A-Z]{3}$"},
           "an ISO 4217 code: money in that currency only; the CSV's money columns are in it (every currency)"),
    FORMAT,
)
SITE_METRICS_QUERY = (*SITE_BOUNDS, *METRIC_OPTIONS)
GROUP_METRICS_QUERY = (
    _param("site", {"type": "string", "pattern": SITE_LIST_PATTERN}, "comma-separated site ids (every site)",
           repeatable=True),
    _param("tag", {"type": "string", "pattern": TAG_LIST_PATTERN}, "only sites having every one of these tags",
           repeatable=True),
    *GROUP_BOUNDS,
    *METRIC_OPTIONS,
)
FOOTFALL_QUERY = (
    *SITE_BOUNDS,
    _param("granularity", {"type": "string", "enum": ["hour", "day"]}, "the bucket size (day)",
           code="bad_granularity"),
    FORMAT,
)
# Lists (collector/api/pages.py): a cursor is a next_cursor this collector gave, unchanged.
PAGE = (
    _param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "items per page (100)"),
    _param("cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,1000}$"},
           "the next_cursor of the previous page, unchanged", code="bad_cursor"),
)


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
    currency: str | None = None


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
    trading = params.get("trading_hours", "false")
    if trading not in _TRUE + _FALSE:
        raise BadRequest(f"trading_hours must be true or false, got {params['trading_hours']!r}", code="bad_parameter")
    compare = params.get("compare") or None
    if compare is not None and compare not in COMPARISONS:
        raise BadRequest(f"compare must be one of {', '.join(COMPARISONS)}, got {compare!r}", code="bad_compare")
    week_start = org_week_start
    if "week_start" in params:
        text = params["week_start"]
        if text in WEEKDAYS:
            week_start = WEEKDAYS.index(text) + 1
        elif text in ("1", "2", "3", "4", "5", "6", "7"):  # not isdigit(): it takes "²", which int() refuses
            week_start = int(text)
        else:
            raise BadRequest(
                f"week_start must be a weekday (monday ... sunday) or 1-7, got {params['week_start']!r}",
                code="bad_parameter",
            )
    currency = params.get("currency")
    if currency is not None and currency_problem(currency) is not None:
        raise BadRequest(f"currency must be an ISO 4217 code such as EUR, got {currency!r}", code="bad_parameter")
    return Options(granularity, metrics, trading in _TRUE, compare, week_start, currency)


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
            if re.fullmatch(DATE, text):
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
            f"`{name}` is required: a local date (2026-03-08) or a date and time", code="missing_parameter"
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
