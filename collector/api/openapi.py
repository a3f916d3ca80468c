"""The OpenAPI 3.1 document of the collector's HTTP API, served at `GET /v1/openapi.json`.

Built here as data, one `_op` per route; tests/collector/test_openapi.py fails when a route of the
application is missing from it or the document names a route the application does not have, and
schemathesis checks the answers of a running collector against it. A new endpoint adds its
operation to PATHS (and its schemas to SCHEMAS when it has new shapes).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..measures import METRICS
from ..periods import COMPARISONS, GRANULARITIES, WEEKDAYS

VERSION = "1.0.0"

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_MONEY = {"type": "object", "additionalProperties": {"type": "integer"},
          "description": "per ISO 4217 currency, in minor units"}
_MONEY_RATIO = {"type": "object", "additionalProperties": _NULLABLE_NUMBER, "description": "per currency, minor units"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "machine-readable code, such as bad_date or range_too_large"},
            "message": {"type": "string", "description": "what was wrong and what to do"},
        },
    },
    "Values": {
        "type": "object",
        "description": "The requested metrics (collector/measures.py) and the completeness fields.",
        "required": ["completeness", "gap", "complete"],
        "properties": {
            "entries": {"type": "integer"},
            "exits": {"type": "integer"},
            "visitors": {"type": "number"},
            "occupancy": {"type": ["integer", "null"]},
            "transactions": {"type": "integer"},
            "revenue": _MONEY,
            "conversion": _NULLABLE_NUMBER,
            "atv": _MONEY_RATIO,
            "sales_per_visitor": _MONEY_RATIO,
            "items_per_transaction": _NULLABLE_NUMBER,
            "completeness": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                             "description": "reported / expected sensor-quarters; null when no sensor is expected"},
            "gap": {"type": "boolean", "description": "an outage (buffer gap, sensor offline) touches the bucket"},
            "complete": {"type": "boolean"},
        },
    },
    "Bucket": {
        "allOf": [
            {"$ref": "#/components/schemas/Values"},
            {
                "type": "object",
                "required": ["start", "end"],
                "properties": {
                    "start": {"type": "string", "description": "local start (with offset for one site)"},
                    "end": {"type": "string"},
                    "fold": {"type": "integer", "enum": [0, 1],
                             "description": "group answers: 1 for the second occurrence of a repeated hour"},
                },
            },
        ]
    },
    "Period": {
        "type": "object",
        "required": ["from", "to", "buckets", "totals"],
        "properties": {
            "from": {"type": "string"},
            "to": {"type": "string"},
            "buckets": {"type": "array", "items": {"$ref": "#/components/schemas/Bucket"}},
            "totals": {"$ref": "#/components/schemas/Values"},
        },
    },
    "MetricsAnswer": {
        "allOf": [
            {"$ref": "#/components/schemas/Period"},
            {
                "type": "object",
                "required": ["granularity", "trading_hours", "metrics", "currencies"],
                "properties": {
                    "site": {"type": "string"},
                    "timezone": {"type": "string"},
                    "sites": {"type": "array", "items": {"type": "string"}},
                    "granularity": {"type": "string", "enum": list(GRANULARITIES)},
                    "trading_hours": {"type": "boolean"},
                    "metrics": {"type": "array", "items": {"type": "string", "enum": list(METRICS)}},
                    "currencies": {"type": "array", "items": {"type": "string"}},
                    "comparison": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Period"},
                            {"type": "object", "required": ["kind"],
                             "properties": {"kind": {"type": "string", "enum": list(COMPARISONS)}}},
                        ]
                    },
                },
            },
        ]
    },
    "Footfall": {
        "type": "object",
        "required": ["site", "timezone", "granularity", "from", "to", "buckets", "totals"],
        "properties": {
            "site": {"type": "string"}, "timezone": {"type": "string"},
            "granularity": {"type": "string", "enum": ["hour", "day"]},
            "from": {"type": "string"}, "to": {"type": "string"},
            "buckets": {"type": "array", "items": {
                "type": "object", "required": ["start", "end", "entries", "exits"],
                "properties": {"start": {"type": "string"}, "end": {"type": "string"},
                               "entries": {"type": "integer"}, "exits": {"type": "integer"}},
            }},
            "totals": {"type": "object", "required": ["entries", "exits"],
                       "properties": {"entries": {"type": "integer"}, "exits": {"type": "integer"}}},
        },
    },
    "Intervals": {"type": "array", "items": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                                             "maxItems": 2}},
    "Site": {
        "type": "object",
        "required": ["id", "name", "timezone", "visitors", "day_reset", "tags", "opening_hours", "hours_exceptions",
                     "expected_sensors", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "timezone": {"type": "string"},
            "visitors": {"type": "string", "enum": ["entries", "exits", "mean"]},
            "day_reset": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opening_hours": {"type": ["object", "null"],
                              "additionalProperties": {"$ref": "#/components/schemas/Intervals"}},
            "hours_exceptions": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Intervals"}},
            "expected_sensors": {"type": ["array", "null"], "items": {"type": "string"}},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"},
        },
    },
    "SiteSettings": {
        "type": "object",
        "description": "Settings to set (collector/sitesettings.py); every problem is reported at once.",
        "properties": {
            "name": {"type": "string"}, "timezone": {"type": "string"},
            "visitors": {"type": "string", "enum": ["entries", "exits", "mean"]},
            "day_reset": {"type": "string", "examples": ["04:00"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opening_hours": {"type": ["object", "null"]},
            "hours_exceptions": {"type": "object"},
            "expected_sensors": {"type": ["array", "null"], "items": {"type": "string"}},
        },
    },
    "Sensor": {
        "type": "object",
        "required": ["name", "counts", "occupancy", "reporting_since", "last_report_at", "retired_at", "expected"],
        "properties": {
            "name": {"type": "string"}, "counts": {"type": "boolean"}, "occupancy": {"type": "boolean"},
            "reporting_since": {"type": "string"}, "last_report_at": {"type": "string"},
            "retired_at": {"type": ["string", "null"]}, "expected": {"type": "boolean"},
        },
    },
    "Outage": {
        "type": "object",
        "required": ["id", "kind", "sensor", "agent", "starts_at", "ends_at", "lost_first", "lost_last", "detail"],
        "properties": {
            "id": {"type": "integer"}, "kind": {"type": "string", "enum": ["gap", "offline"]},
            "sensor": {"type": "string"}, "agent": {"type": "string"}, "starts_at": {"type": "string"},
            "ends_at": {"type": ["string", "null"]}, "lost_first": {"type": "integer"},
            "lost_last": {"type": "integer"}, "detail": {"type": "string"},
        },
    },
    "Organization": {
        "type": "object", "required": ["id", "name", "week_start"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                       "week_start": {"type": "string", "enum": list(WEEKDAYS)}},
    },
    "Agent": {
        "type": "object",
        "required": ["id", "site", "status", "version", "hostname", "enrolled_at", "last_seen", "hw_seq",
                     "clock_skew_s"],
        "properties": {
            "id": {"type": "string"}, "site": {"type": "string"}, "status": {"type": "string"},
            "version": {"type": "string"}, "hostname": {"type": "string"}, "enrolled_at": {"type": "string"},
            "last_seen": {"type": ["string", "null"]}, "hw_seq": {"type": "integer"},
            "clock_skew_s": {"type": ["number", "null"]},
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_AUTH_ERRORS = {
    "401": _error("no API key, or an unknown or revoked one (missing_api_key, invalid_api_key)"),
    "403": _error("the key's role may not do this (forbidden)"),
    "503": _error("the database is unreachable (unavailable); retry after Retry-After"),
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    tag: str = "metrics",
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if not public:
        operation["responses"].update(_AUTH_ERRORS)
    else:
        operation["security"] = []
        operation["responses"].setdefault("503", _AUTH_ERRORS["503"])
    operation["responses"].setdefault("400", _error("a bad parameter or body; `error` says which"))
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        operation["responses"].setdefault("415", _error("the body is not application/json"))
    return operation


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


_SITE = _path("site", "the site's id")
_PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "items per page (100)"),
    _query("cursor", {"type": "string"}, "the next_cursor of the previous page"),
]
_METRIC_PARAMS = [
    _query("from", {"type": "string"}, "inclusive: a local date (2026-03-08) or a date and time", required=True),
    _query("to", {"type": "string"}, "exclusive: a local date or a date and time", required=True),
    _query("granularity", {"type": "string", "enum": list(GRANULARITIES)}, "bucket size (day)"),
    _query("metrics", {"type": "string"}, f"comma-separated, from: {', '.join(METRICS)} (all)"),
    _query("trading_hours", {"type": "boolean"}, "count only the sites' trading hours (false)"),
    _query("compare", {"type": "string", "enum": list(COMPARISONS)}, "a comparison range returned beside"),
    _query("week_start", {"type": "string", "enum": list(WEEKDAYS)}, "first day of week buckets"),
    _query("format", {"type": "string", "enum": ["json", "csv"]}, "else the Accept header decides"),
]
_METRICS_ANSWER = {
    "description": "the buckets, totals and optional comparison",
    "headers": {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": _ref("MetricsAnswer")},
                "text/csv": {"schema": {"type": "string"}}},
}
_METRICS_RESPONSES = {
    "200": _METRICS_ANSWER,
    "304": {"description": "the copy named by If-None-Match is current"},
    "400": _error("bad_date, bad_range, range_too_large, unaligned_range, bad_granularity, bad_metric, "
                  "bad_compare, bad_parameter or bad_format"),
    "404": _error("no such site in the key's organization (not_found, unknown_site)"),
    "406": _error("neither JSON nor CSV is acceptable (not_acceptable)"),
}
_LIST = {"type": "object", "required": ["next_cursor"]}


def _list(name: str, item: str) -> dict[str, Any]:
    return {**_LIST, "required": [name, "next_cursor"],
            "properties": {name: {"type": "array", "items": _ref(item)}, "next_cursor": {"type": ["string", "null"]}}}


PATHS: dict[str, dict[str, Any]] = {
    "/v1/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})}, public=True, tag="meta")},
    "/v1/health": {"get": _op("Database reachable, with ingest counters", {
        "200": _json({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}),
    }, public=True, tag="meta")},
    "/v1/ingest": {"post": {
        "summary": "Signed batch upload from an agent (protocol/SPEC.md section 6)", "tags": ["agents"],
        "security": [],
        "requestBody": {"required": True, "content": {"application/vnd.footfall.batch.v1": {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {
            "200": _json({"type": "object", "required": ["accepted", "duplicates", "acked_seq"], "properties": {
                "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "acked_seq": {"type": "integer"}}}),
            "400": _error("malformed_batch, agent_mismatch"),
            "401": _error("missing_signature, bad_signature, unknown_agent, revoked_agent, timestamp_out_of_window"),
            "413": _error("batch_too_large"), "415": _error("unsupported_media_type"), "503": _error("unavailable"),
        },
    }},
    "/v1/agents/enroll": {"post": {
        **_op("Trade an enrollment token and a public key for an agent id (protocol/SPEC.md section 5)", {
            "201": _json({"type": "object", "required": ["agent_id", "organization", "site", "timezone"],
                          "properties": {k: {"type": "string"} for k in ("agent_id", "organization", "site",
                                                                         "timezone")}}),
            "401": _error("unknown_token, token_expired, token_revoked, token_used_up"),
            "409": _error("key_already_enrolled"),
        }, body={"type": "object", "required": ["token", "public_key"], "properties": {
            "token": {"type": "string"}, "public_key": {"type": "string"}, "hostname": {"type": "string"},
            "version": {"type": "string"}}}, public=True, tag="agents"),
    }},
    "/v1/organization": {"get": _op("The key's organization", {"200": _json(_ref("Organization")),
                                                                "404": _error("not_found")}, tag="sites")},
    "/v1/sites": {"get": _op("The organization's sites, by id", {"200": _json(_list("sites", "Site"))}, parameters=[
        _query("tag", {"type": "string"}, "only sites having every one of these comma-separated tags"), *_PAGE,
    ], tag="sites")},
    "/v1/sites/{site}": {"get": _op("One site and its settings", {"200": _json(_ref("Site")),
                                                                   "404": _error("not_found")},
                                    parameters=[_SITE], tag="sites")},
    "/v1/sites/{site}/sensors": {"get": _op("The site's sensors, learnt from its data", {
        "200": _json({**_list("sensors", "Sensor"), "required": ["sensors", "expected_sensors", "next_cursor"]}),
        "404": _error("not_found"),
    }, parameters=[_SITE, *_PAGE], tag="sites")},
    "/v1/sites/{site}/outages": {"get": _op("Buffer gaps and offline periods agents reported, newest first", {
        "200": _json(_list("outages", "Outage")), "404": _error("not_found"),
    }, parameters=[_SITE, _query("from", {"type": "string"}, "only outages ending after"),
                   _query("to", {"type": "string"}, "only outages starting before"), *_PAGE], tag="sites")},
    "/v1/sites/{site}/metrics": {"get": _op("Every metric of one site per local bucket", _METRICS_RESPONSES,
                                            parameters=[_SITE, *_METRIC_PARAMS])},
    "/v1/metrics": {"get": _op("Every metric of a group of sites, each in its own local periods", _METRICS_RESPONSES,
                               parameters=[
                                   _query("site", {"type": "string"}, "comma-separated site ids (repeatable)"),
                                   _query("tag", {"type": "string"}, "sites having every one of these tags"),
                                   *_METRIC_PARAMS])},
    "/v1/sites/{site}/footfall": {"get": _op("Entries and exits per local hour or day", {
        "200": {"description": "buckets", "content": {"application/json": {"schema": _ref("Footfall")},
                                                      "text/csv": {"schema": {"type": "string"}}}},
        "404": _error("not_found"),
    }, parameters=[_SITE, *[p for p in _METRIC_PARAMS if p["name"] in ("from", "to")],
                   _query("granularity", {"type": "string", "enum": ["hour", "day"]}, "bucket size (day)"),
                   _query("format", {"type": "string", "enum": ["json", "csv"]}, "json")])},
    "/v1/admin/organization": {"patch": _op("Set the organization's week start", {
        "200": _json(_ref("Organization")), "404": _error("not_found"),
    }, body={"type": "object", "required": ["week_start"],
             "properties": {"week_start": {"type": "string", "enum": list(WEEKDAYS)}}}, tag="admin")},
    "/v1/admin/sites": {"post": _op("Create a site with its settings", {
        "201": _json(_ref("Site")), "409": _error("site_exists"),
    }, body={"allOf": [_ref("SiteSettings"), {"type": "object", "required": ["id", "timezone"],
                                              "properties": {"id": {"type": "string"}}}]}, tag="admin")},
    "/v1/admin/sites/{site}": {"patch": _op("Change a site's settings", {
        "200": _json(_ref("Site")), "404": _error("not_found"), "409": _error("timezone_locked"),
    }, parameters=[_SITE], body=_ref("SiteSettings"), tag="admin")},
    "/v1/admin/sites/{site}/sensors/{sensor}": {"patch": _op("Retire a sensor, or bring it back", {
        "200": _json(_ref("Sensor")), "404": _error("not_found"),
    }, parameters=[_SITE, _path("sensor", "the sensor's name")], body={
        "type": "object", "required": ["retired_at"],
        "properties": {"retired_at": {"type": ["string", "null"], "description": "now, an ISO datetime, or null"}}},
        tag="admin")},
}

# The fleet API (collector/api/fleet_admin.py, collector/api/fleet_agents.py, collector/observability.py).
_OBJECT = {"type": "object"}
_SIGNED_ERRORS = {
    "400": _error("a malformed body or version"),
    "401": _error("missing_signature, bad_signature, unknown_agent, revoked_agent, timestamp_out_of_window"),
    "404": _error("no such configuration for this agent"),
    "409": _error("key_already_enrolled"),
    "503": _error("unavailable"),
}


def _signed(summary: str, *, body: bool, version: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary + " (signed by the agent, protocol/SPEC.md)", "tags": ["agents"], "security": [],
        "responses": {"200": _json(_OBJECT), **_SIGNED_ERRORS},
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _OBJECT}}}
    if version:
        operation["parameters"] = [_path("version", "a configuration version")]
    return operation


_VERSION = _path("version", "a configuration version")
_AGENT = _path("agent", "the agent's id")
PATHS.update({
    "/v1/agents/heartbeat": {"post": _signed("An agent's heartbeat", body=True)},
    "/v1/agents/config/{version}": {"get": _signed("A pushed configuration", body=False, version=True)},
    "/v1/agents/config/{version}/report": {"post": _signed("Applied or rejected", body=True, version=True)},
    "/v1/agents/rotate-key": {"post": _signed("Key rotation", body=True)},
    "/v1/admin/tokens": {
        "post": _op("Create an enrollment token", {"201": _json(_OBJECT), "404": _error("not_found")},
                    body={"type": "object", "required": ["site"], "properties": {
                        "site": {"type": "string"}, "expires": {"type": "string"}, "uses": {"type": "integer"}}},
                    tag="admin"),
        "get": _op("The organization's enrollment tokens", {"200": _json(_OBJECT)}, tag="admin"),
    },
    "/v1/admin/tokens/{id}/revoke": {"post": _op("Revoke a token", {
        "200": _json(_OBJECT), "404": _error("not_found")}, parameters=[_path("id", "the token's id")], tag="admin")},
    "/v1/admin/agents": {"get": _op("The organization's agents, with their state", {"200": _json(_OBJECT)},
                                    parameters=[_query(name, {"type": "string"}, name) for name in (
                                        "site", "state", "version", "sort", "desc", "stale", "offline")],
                                    tag="admin")},
    "/v1/admin/agents/{agent}": {"get": _op("One agent", {"200": _json(_OBJECT), "404": _error("not_found")},
                                            parameters=[_AGENT], tag="admin")},
    "/v1/admin/agents/{agent}/revoke": {"post": _op("Revoke an agent", {
        "200": _json(_OBJECT), "404": _error("not_found")}, parameters=[_AGENT], tag="admin")},
    "/v1/admin/agents/{agent}/rotate-key": {"post": _op("Ask an agent to rotate its key", {
        "202": _json(_OBJECT), "404": _error("not_found"), "409": _error("agent_revoked")},
        parameters=[_AGENT], tag="admin")},
    "/v1/admin/configs": {"post": _op("Push a configuration", {"201": _json(_OBJECT), "404": _error("not_found")},
                                      body={"type": "object", "properties": {
                                          k: {"type": "string"} for k in ("scope", "target", "config", "note")}},
                                      tag="admin")},
    "/v1/admin/configs/status": {"get": _op("Which agents run which configuration", {"200": _json(_OBJECT)},
                                            tag="admin")},
    "/v1/admin/configs/{version}": {"get": _op("One pushed configuration", {
        "200": _json(_OBJECT), "404": _error("not_found")}, parameters=[_VERSION], tag="admin")},
    "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["meta"], "security": [], "responses": {
        "200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
        "400": _error("bad_parameter"), "503": _error("unavailable")}}},
    "/healthz": {"get": _op("Alive", {"200": _json(_OBJECT)}, public=True, tag="meta")},
    "/readyz": {"get": _op("Ready: the database answers with this schema", {
        "200": _json(_OBJECT), "503": _json(_OBJECT, "not ready, with the reason")}, public=True, tag="meta")},
})


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "footfall collector",
            "version": VERSION,
            "description": "Ingest from agents, retail metrics in each store's local time, fleet administration. "
            "Every error is {\"error\": code, \"message\": text}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "an API key, ffk_..., of one organization"}},
        },
    }


async def openapi_handler(request: web.Request) -> web.Response:
    """`GET /v1/openapi.json`."""
    return web.json_response(document())
