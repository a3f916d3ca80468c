"""Metrics answers as JSON or CSV: the answer document, its ETag, conditional requests, and streaming.

An answer is built once as a plain document (cached by collector/cache.py) and rendered per
request. Large answers (a year of days across many sites, with a comparison) are written in
chunks as they are encoded, never as one string. Every answer carries an ETag (a digest of the
document and the format) and is answered 304 to a matching If-None-Match. Cache-Control: a range
that has ended is `private, max-age=300` (late uploads are rare and the ETag revalidates them);
one still running is `private, no-cache`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..localtime import local_iso
from ..measures import COMPLETENESS_FIELDS, PER_CURRENCY, derive
from ..periods import key_end_label, key_label, localize
from ..query import MetricsQuery, Series

CLOSED_MAX_AGE_S = 300
_CHUNK = 64 * 1024


def buckets_json(series: Series, query: MetricsQuery, single: bool) -> list[dict[str, Any]]:
    """One object per bucket: its bounds, then the metrics and completeness fields."""
    out: list[dict[str, Any]] = []
    zone = query.sites[0].zone
    for key in series.keys:
        if single:
            start, end = series.spans[key]
            head: dict[str, Any] = {"start": local_iso(start, zone), "end": local_iso(end, zone)}
        else:
            label, fold = key_label(key)
            head = {"start": label, "end": key_end_label(key, query.granularity), "fold": fold}
        out.append({**head, **derive(series.buckets[key], query.metrics, series.currencies)})
    return out


def period_json(series: Series, query: MetricsQuery, single: bool) -> dict[str, Any]:
    """Bounds, buckets and totals of one range."""
    if single:
        zone = query.sites[0].zone
        start, end = localize(query.start, zone), localize(query.end, zone)
        bounds = {"from": local_iso(start, zone), "to": local_iso(end, zone)}
    else:
        bounds = {"from": query.start.isoformat(), "to": query.end.isoformat()}
    return {
        **bounds,
        "buckets": buckets_json(series, query, single),
        "totals": derive(series.total(), query.metrics, series.currencies),
    }


def answer_document(
    series: Series,
    query: MetricsQuery,
    *,
    single: bool,
    comparison: tuple[str, Series, MetricsQuery] | None = None,
) -> dict[str, Any]:
    """The whole answer (see the OpenAPI document for its schema)."""
    currencies = sorted(set(series.currencies) | (set(comparison[1].currencies) if comparison else set()))
    series.currencies = currencies
    head: dict[str, Any]
    if single:
        head = {"site": query.sites[0].id, "timezone": query.sites[0].zone.key}
    else:
        head = {"sites": [s.id for s in query.sites]}
    document: dict[str, Any] = {
        **head,
        "granularity": query.granularity,
        "trading_hours": query.trading_hours,
        "metrics": list(query.metrics),
        "currencies": currencies,
        **period_json(series, query, single),
    }
    if comparison is not None:
        kind, other, other_query = comparison
        other.currencies = currencies
        document["comparison"] = {"kind": kind, **period_json(other, other_query, single)}
    return document


def etag_of(document: dict[str, Any]) -> str:
    """A strong validator of the document (the format is appended when sending)."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:32]


def json_chunks(value: Any) -> Iterator[str]:
    """JSON text of `value` in pieces: big lists item by item, everything else whole."""
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(key) + ":"
            yield from json_chunks(item)
        yield "}"
    elif isinstance(value, list) and len(value) > 64:
        yield "["
        for i, item in enumerate(value):
            yield ("," if i else "") + json.dumps(item, separators=(",", ":"))
        yield "]"
    else:
        yield json.dumps(value, separators=(",", ":"))


def csv_columns(document: dict[str, Any]) -> list[str]:
    """The CSV header: bounds, each metric (one column per currency for money), completeness."""
    columns = ["start", "end"]
    if "sites" in document:
        columns.append("fold")
    for metric in document["metrics"]:
        if metric in PER_CURRENCY:
            columns += [f"{metric}_{c}" for c in document["currencies"]]
        else:
            columns.append(metric)
    columns += list(COMPLETENESS_FIELDS)
    if "comparison" in document:
        columns.insert(0, "period")
    return columns


def csv_chunks(document: dict[str, Any]) -> Iterator[str]:
    """CSV text of the buckets (current, then the comparison's), one row per bucket."""
    columns = csv_columns(document)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    periods = [("current", document)]
    if "comparison" in document:
        periods.append(("comparison", document["comparison"]))
    for name, period in periods:
        for bucket in period["buckets"]:
            writer.writerow([_cell(_column(bucket, column, name)) for column in columns])
            if out.tell() > _CHUNK:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
    yield out.getvalue()


def _column(bucket: dict[str, Any], column: str, period: str) -> Any:
    if column == "period":
        return period
    if column in bucket:
        return bucket[column]
    metric, _, currency = column.rpartition("_")
    return bucket.get(metric, {}).get(currency)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


async def send(
    request: web.Request, document: dict[str, Any], tag: str, fmt: str, closed: bool
) -> web.StreamResponse:
    """Answer with `document` in `fmt`, or 304 when the client's copy is current."""
    etag = f'"{tag}-{fmt}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={CLOSED_MAX_AGE_S}" if closed else "private, no-cache",
        "Vary": "Accept, Authorization",
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers=headers)
    if fmt == "csv":
        response.content_type = "text/csv"
        chunks = csv_chunks(document)
    else:
        response.content_type = "application/json"
        chunks = json_chunks(document)
    response.charset = "utf-8"
    await response.prepare(request)
    pending: list[str] = []
    size = 0
    for piece in chunks:
        pending.append(piece)
        size += len(piece)
        if size >= _CHUNK:
            await response.write("".join(pending).encode())
            pending, size = [], 0
    await response.write("".join(pending).encode())
    await response.write_eof()
    return response


def is_closed(end: datetime, now: datetime | None = None) -> bool:
    """Whether a range ending at `end` (UTC) is over."""
    return end <= (now or datetime.now(UTC))
