"""Metrics answers as JSON or CSV: the answer document, its ETag, conditional requests, and streaming.

JSON gives money per currency in minor units (`"revenue": {"EUR": 6167}`). CSV has one column per
requested metric whatever the data holds, so that a spreadsheet or BI refresh always finds the same
columns: `start`, `end` (`fold` for groups; `period` first with a comparison), each metric, and
the completeness fields. Money metrics (`revenue`, `atv`, `sales_per_visitor`) are in major units
(61.67, using the currency's ISO 4217 decimals, protocol/currencies.py) and a `currency` column
before the first of them names their currency: the `currency` parameter's, else the answer's only
one, else empty with empty money cells when there were no sales. An answer with sales in several
currencies needs `currency=` for CSV (400 `currency_required` names them), since a row holds one.

An answer is built once as a plain document and encoded to JSON once (both cached by
collector/cache.py); the range limits keep it small (at most 1,344 buckets and a comparison, a
few MB), and it is sent in 64 KiB chunks. CSV is encoded row by row as it is sent. Every answer
carries an ETag (the JSON's digest, with the format) and is answered 304 to a matching
If-None-Match. Cache-Control: a range that has ended is `private, max-age=300` (late uploads are
rare, and the ETag revalidates them); one still running is `private, no-cache`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from footfall.protocol.currencies import to_major

from ..errors import BadRequest
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
    labels: dict[datetime, str] = {}  # a bucket's end is the next one's start: format each instant once
    for key in series.keys:
        if single:
            start, end = series.spans[key]
            for instant in (start, end):
                if instant not in labels:
                    labels[instant] = local_iso(instant, zone)
            head: dict[str, Any] = {"start": labels[start], "end": labels[end]}
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
    currency: str | None = None,
) -> dict[str, Any]:
    """The whole answer (see the OpenAPI document for its schema); money only in `currency` when given."""
    if currency is not None:
        currencies = [currency]
    else:
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


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer document, its JSON and the JSON's digest (the ETag, before the format is appended)."""

    document: dict[str, Any]
    body: bytes
    tag: str


def rendered(document: dict[str, Any]) -> Rendered:
    """Encode the document once."""
    body = json.dumps(document, separators=(",", ":")).encode()
    return Rendered(document, body, hashlib.sha256(body).hexdigest()[:32])


def csv_columns(document: dict[str, Any]) -> list[str]:
    """The CSV header, from the request alone: bounds, each metric (with `currency` before money), completeness."""
    columns = ["period"] if "comparison" in document else []
    columns += ["start", "end"]
    if "sites" in document:
        columns.append("fold")
    for metric in document["metrics"]:
        if metric in PER_CURRENCY and "currency" not in columns:
            columns.append("currency")
        columns.append(metric)
    return columns + list(COMPLETENESS_FIELDS)


def csv_currency(document: dict[str, Any]) -> str:
    """The currency of the CSV's money columns ("" when there is no money); 400 when the answer has several."""
    currencies: list[str] = document["currencies"]
    if len(currencies) > 1 and not PER_CURRENCY.isdisjoint(document["metrics"]):
        raise BadRequest(
            f"this answer has money in {', '.join(currencies)} and a CSV row holds one currency: add "
            f"{' or '.join(f'currency={c}' for c in currencies)} (or ask for JSON, which has them all)",
            code="currency_required",
        )
    return currencies[0] if currencies else ""


def csv_chunks(document: dict[str, Any]) -> Iterator[str]:
    """CSV text of the buckets (current, then the comparison's), one row per bucket."""
    columns = csv_columns(document)
    currency = csv_currency(document)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    periods = [("current", document)]
    if "comparison" in document:
        periods.append(("comparison", document["comparison"]))
    for name, period in periods:
        for bucket in period["buckets"]:
            writer.writerow([_cell(bucket, column, name, currency) for column in columns])
            if out.tell() > _CHUNK:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
    yield out.getvalue()


def _cell(bucket: dict[str, Any], column: str, period: str, currency: str) -> Any:
    if column == "period":
        return period
    if column == "currency":
        return currency
    value = bucket[column]
    if column in PER_CURRENCY:
        minor = value.get(currency) if currency else None
        return "" if minor is None else format(to_major(minor, currency), "f")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


async def send(request: web.Request, answer: Rendered, fmt: str, closed: bool) -> web.StreamResponse:
    """Answer in `fmt`, or 304 when the client's copy is current."""
    etag = f'"{answer.tag}-{fmt}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"private, max-age={CLOSED_MAX_AGE_S}" if closed else "private, no-cache",
        "Vary": "Accept, Authorization",
    }
    if fmt == "csv":
        csv_currency(answer.document)
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "text/csv" if fmt == "csv" else "application/json"
    response.charset = "utf-8"
    await response.prepare(request)
    if fmt == "csv":
        for piece in csv_chunks(answer.document):
            await response.write(piece.encode())
    else:
        for offset in range(0, len(answer.body), _CHUNK):
            await response.write(answer.body[offset:offset + _CHUNK])
    await response.write_eof()
    return response


def is_closed(end: datetime, now: datetime | None = None) -> bool:
    """Whether a range ending at `end` (UTC) is over."""
    return end <= (now or datetime.now(UTC))
