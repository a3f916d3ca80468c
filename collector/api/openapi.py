"""The OpenAPI 3.1 document of the collector's HTTP API, served at `GET /v1/openapi.json`.

Built here as data, one `_op` per route; tests/collector/test_openapi.py fails when a route of the
application is missing from it or the document names a route the application does not have, and
schemathesis checks the answers of a running collector against it. A new endpoint adds its
operation to PATHS (and its schemas to SCHEMAS when it has new shapes).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from footfall.protocol.fleet import MAX_CONFIG_BYTES

from .. import fleet
from ..measures import METRICS
from ..periods import COMPARISONS, GRANULARITIES, WEEKDAYS
from ..sitesettings import DAYS, MAX_EXPECTED, MAX_TAGS, VISITOR_MODES
from ..tenancy import gate_of
from . import fleet_admin, metrics, sites
from .params import DATE_PATTERN, DATETIME_PATTERN, DURATION_PATTERN, ID_SCHEMA, SITE_ID_PATTERN, TAG

VERSION = "1.0.0"

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_MONEY = {"type": "object", "additionalProperties": {"type": "integer"},
          "description": "per ISO 4217 currency, in minor units"}
_MONEY_RATIO = {"type": "object", "additionalProperties": _NULLABLE_NUMBER, "description": "per currency, minor units"}

_HHMM = "^(([01][0-9]|2[0-3]):(00|15|30|45)|24:00)$"
_INTERVALS = {"$ref": "#/components/schemas/Intervals"}
_SETTINGS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "[^ ]"},
    "timezone": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
                 "description": "an IANA zone name, such as Europe/Paris", "examples": ["Europe/Paris"]},
    "visitors": {"type": "string", "enum": list(VISITOR_MODES)},
    "day_reset": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):(00|15|30|45)$", "examples": ["04:00"]},
    "tags": {"type": "array", "items": {"type": "string", "pattern": f"^{TAG}$"}, "maxItems": MAX_TAGS},
    "opening_hours": {"type": ["object", "null"], "propertyNames": {"enum": list(DAYS)},
                      "additionalProperties": _INTERVALS},
    "hours_exceptions": {"type": ["object", "null"], "propertyNames": {"pattern": DATE_PATTERN},
                         "additionalProperties": _INTERVALS, "description": "needs opening_hours"},
    "expected_sensors": {"type": ["array", "null"], "maxItems": MAX_EXPECTED,
                         "items": {"type": "string", "minLength": 1, "maxLength": 128}},
}

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
    "Intervals": {"type": "array", "description": "[open, close) pairs in order, not overlapping", "items": {
        "type": "array", "items": {"type": "string", "pattern": _HHMM}, "minItems": 2, "maxItems": 2}},
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
        "properties": _SETTINGS,
        "additionalProperties": False,
    },
    "NewSite": {
        "type": "object",
        "description": "A site's id and zone, and any other settings.",
        "required": ["id", "timezone"],
        "properties": {"id": {"type": "string", "pattern": SITE_ID_PATTERN}, **_SETTINGS},
        "additionalProperties": False,
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


_JSON_LIMITS = (
    "the body breaks a limit every JSON body has: nesting deeper than 32, an integer beyond ±(2^63−1), "
    "a non-finite number, a lone UTF-16 surrogate or a NUL in a string"
)


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    tag: str = "metrics",
    rules: dict[str, str] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if body is not None:
        # Limits of every JSON body (protocol/strict_json.py), in fields the schema leaves open too.
        rules = {**(rules or {}), "bad_request": _JSON_LIMITS}
    if rules:
        # The 400 codes that answer a request every parameter and body field of which is within its schema:
        # rules between them, or a value only the collector can judge. Everything else the schemas say.
        operation["x-rule-errors"] = dict(rules)
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


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"},
            "description": description}


def _query_of(handler: Any) -> list[dict[str, Any]]:
    """The query parameters a gated handler declares, which the gate checks (collector/api/params.py)."""
    gate = gate_of(handler)
    return [param.document() for param in gate.query] if gate else []


_SITE = _path("site", "the site's id", {"type": "string", "pattern": SITE_ID_PATTERN})
_RANGE_RULES = {
    "bad_range": "`to` is not after `from`",
    "unaligned_range": "a bound is not the start of a bucket of the granularity (in each site's zone)",
    "range_too_large": "the range is longer than the granularity allows (collector/periods.py MAX_RANGE)",
}
_CURSOR_RULE = {"bad_cursor": "a cursor this collector did not give"}
_METRICS_ANSWER = {
    "description": "the buckets, totals and optional comparison; CSV columns as in README (Analysts' API)",
    "headers": {"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": _ref("MetricsAnswer")},
                "text/csv": {"schema": {"type": "string"}}},
}
_METRICS_RESPONSES = {
    "200": _METRICS_ANSWER,
    "304": {"description": "the copy named by If-None-Match is current"},
    "400": _error("unknown_parameter, missing_parameter, bad_date, bad_range, range_too_large, unaligned_range, "
                  "bad_granularity, bad_metric, bad_compare, bad_parameter, bad_format or currency_required"),
    "404": _error("no such site in the key's organization (not_found, unknown_site)"),
    "406": _error("neither JSON nor CSV is acceptable (not_acceptable)"),
}
_SETTINGS_RULES = {
    "bad_settings": "a time zone the zone database does not have, opening intervals that close before they "
    "open or overlap, exceptions without weekly hours, or a name of only spaces",
}
_METRICS_RULES = {
    **_RANGE_RULES,
    "currency_required": "CSV of an answer with money in several currencies, without `currency`",
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
            "token": {"type": "string", "minLength": 1},
            "public_key": {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$",
                           "description": "the raw 32-byte Ed25519 public key, standard base64"},
            "hostname": {"type": "string"}, "version": {"type": "string"}}}, public=True, tag="agents"),
    }},
    "/v1/organization": {"get": _op("The key's organization", {"200": _json(_ref("Organization")),
                                                                "404": _error("not_found")}, tag="sites")},
    "/v1/sites": {"get": _op("The organization's sites, by id", {"200": _json(_list("sites", "Site"))},
                             parameters=_query_of(sites.list_sites_handler), tag="sites", rules=_CURSOR_RULE)},
    "/v1/sites/{site}": {"get": _op("One site and its settings", {"200": _json(_ref("Site")),
                                                                   "404": _error("not_found")},
                                    parameters=[_SITE], tag="sites")},
    "/v1/sites/{site}/sensors": {"get": _op("The site's sensors, learnt from its data", {
        "200": _json({**_list("sensors", "Sensor"), "required": ["sensors", "expected_sensors", "next_cursor"]}),
        "404": _error("not_found"),
    }, parameters=[_SITE, *_query_of(sites.sensors_handler)], tag="sites", rules=_CURSOR_RULE)},
    "/v1/sites/{site}/outages": {"get": _op("Buffer gaps and offline periods agents reported, newest first", {
        "200": _json(_list("outages", "Outage")), "404": _error("not_found"),
    }, parameters=[_SITE, *_query_of(sites.outages_handler)], tag="sites", rules=_CURSOR_RULE)},
    "/v1/sites/{site}/metrics": {"get": _op("Every metric of one site per local bucket", _METRICS_RESPONSES,
                                            parameters=[_SITE, *_query_of(metrics.site_metrics_handler)],
                                            rules=_METRICS_RULES)},
    "/v1/metrics": {"get": _op("Every metric of a group of sites, each in its own local periods", _METRICS_RESPONSES,
                               parameters=_query_of(metrics.group_metrics_handler), rules=_METRICS_RULES)},
    "/v1/sites/{site}/footfall": {"get": _op("Entries and exits per local hour or day", {
        "200": {"description": "buckets", "content": {"application/json": {"schema": _ref("Footfall")},
                                                      "text/csv": {"schema": {"type": "string"}}}},
        "404": _error("not_found"),
    }, parameters=[_SITE, *_query_of(metrics.footfall_handler)], rules=_RANGE_RULES)},
    "/v1/admin/organization": {"patch": _op("Set the organization's week start", {
        "200": _json(_ref("Organization")), "404": _error("not_found"),
    }, body={"type": "object", "required": ["week_start"], "additionalProperties": False,
             "properties": {"week_start": {"type": "string", "enum": list(WEEKDAYS)}}}, tag="admin")},
    "/v1/admin/sites": {"post": _op("Create a site with its settings", {
        "201": _json(_ref("Site")), "409": _error("site_exists"),
    }, body=_ref("NewSite"), tag="admin", rules=_SETTINGS_RULES)},
    "/v1/admin/sites/{site}": {"patch": _op("Change a site's settings", {
        "200": _json(_ref("Site")), "404": _error("not_found"), "409": _error("timezone_locked"),
    }, parameters=[_SITE], body=_ref("SiteSettings"), tag="admin", rules=_SETTINGS_RULES)},
    "/v1/admin/sites/{site}/sensors/{sensor}": {"patch": _op("Retire a sensor, or bring it back", {
        "200": _json(_ref("Sensor")), "404": _error("not_found"),
    }, parameters=[_SITE, _path("sensor", "the sensor's name")], body={
        "type": "object", "required": ["retired_at"], "additionalProperties": False,
        "properties": {"retired_at": {
            "anyOf": [{"type": "string", "enum": ["now"]}, {"type": "string", "pattern": DATETIME_PATTERN},
                      {"type": "null"}],
            "description": "now, an ISO datetime with its offset, or null to bring the sensor back"}}},
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
        operation["parameters"] = [_VERSION]
    return operation


_VERSION = _path("version", "a configuration version", ID_SCHEMA)
_AGENT = _path("agent", "the agent's id", {"type": "string", "pattern": "^agt_[a-z0-9]{8,64}$"})
_THRESHOLD_RULES = {"bad_thresholds": "`offline` is shorter than `stale`, or either is longer than 365d"}
PATHS.update({
    "/v1/agents/heartbeat": {"post": _signed("An agent's heartbeat", body=True)},
    "/v1/agents/config/{version}": {"get": _signed("A pushed configuration", body=False, version=True)},
    "/v1/agents/config/{version}/report": {"post": _signed("Applied or rejected", body=True, version=True)},
    "/v1/agents/rotate-key": {"post": _signed("Key rotation", body=True)},
    "/v1/admin/tokens": {
        "post": _op("Create an enrollment token", {"201": _json(_OBJECT), "404": _error("not_found")},
                    body={"type": "object", "required": ["site"], "properties": {
                        "site": {"type": "string", "pattern": SITE_ID_PATTERN},
                        "expires": {"type": "string", "pattern": DURATION_PATTERN,
                                    "description": "its lifetime, at most a year (24h)"},
                        "uses": {"type": "integer", "minimum": 1, "maximum": 100_000,
                                 "description": "how many agents it enrolls (1)"}}},
                    tag="admin", rules={"bad_expiry": "`expires` is longer than a year"}),
        "get": _op("The organization's enrollment tokens", {"200": _json(_OBJECT)}, tag="admin"),
    },
    "/v1/admin/tokens/{id}/revoke": {"post": _op("Revoke a token", {
        "200": _json(_OBJECT), "404": _error("not_found")}, parameters=[_path("id", "the token's id", ID_SCHEMA)],
        tag="admin")},
    "/v1/admin/agents": {"get": _op("The organization's agents, with their state", {"200": _json(_OBJECT)},
                                    parameters=_query_of(fleet_admin.list_agents_handler), tag="admin",
                                    rules=_THRESHOLD_RULES)},
    "/v1/admin/agents/{agent}": {"get": _op("One agent", {"200": _json(_OBJECT), "404": _error("not_found")},
                                            parameters=[_AGENT, *_query_of(fleet_admin.show_agent_handler)],
                                            tag="admin", rules=_THRESHOLD_RULES)},
    "/v1/admin/agents/{agent}/revoke": {"post": _op("Revoke an agent", {
        "200": _json(_OBJECT), "404": _error("not_found")}, parameters=[_AGENT], tag="admin")},
    "/v1/admin/agents/{agent}/rotate-key": {"post": _op("Ask an agent to rotate its key", {
        "202": _json(_OBJECT), "404": _error("not_found"), "409": _error("agent_revoked")},
        parameters=[_AGENT], tag="admin")},
    "/v1/admin/configs": {"post": _op("Push a configuration", {
        "201": _json(_OBJECT), "404": _error("not_found"), "409": _error("agent_revoked")},
        body={"type": "object", "required": ["scope", "config"], "properties": {
            "scope": {"type": "string", "enum": list(fleet.SCOPES)},
            "target": {"type": "string", "description": "the agent or site id; none for all"},
            "config": {"type": "string", "description": f"an agent.toml, at most {MAX_CONFIG_BYTES} bytes"},
            "note": {"type": "string"}}},
        tag="admin", rules={
            "missing_target": "a push to an agent or a site without its id",
            "bad_config": "`config` is not valid TOML",
            "config_too_large": f"`config` is over {MAX_CONFIG_BYTES} bytes",
        })},
    "/v1/admin/configs/status": {"get": _op("Which agents run which configuration", {"200": _json(_OBJECT)},
                                            parameters=_query_of(fleet_admin.config_status_handler), tag="admin",
                                            rules=_THRESHOLD_RULES)},
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
