"""HTTP plumbing every endpoint shares: the one error middleware, the server-time header, and the readers of
what a caller sends (bounded bodies, JSON objects, whole numbers), each refusing bad input with a 400 naming it.

Every error answer has the same shape, `{"error": code, "message": human text}`, whatever
raised it: our ApiError tree, the protocol's errors, aiohttp's own (no such route, wrong
method), a database that cannot be reached (503 with Retry-After, so agents back off), or a
bug (500, logged with its traceback; the process keeps serving).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from footfall.protocol.errors import ProtocolError
from footfall.protocol.signing import HEADER_SERVER_TIME
from footfall.protocol.strict_json import JsonRefused, loads_object
from psycopg_pool import PoolClosed, PoolTimeout

from footfall.logs import event

from .errors import ApiError, BadRequest

log = logging.getLogger("footfall.collector.http")

_AIOHTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}
_READ_CHUNK = 64 * 1024
# A whole number of at most 19 digits (PostgreSQL's bigint), in ASCII digits only.
_DIGITS = re.compile(r"[0-9]{1,19}")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in the collector's one shape."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def error_middleware(retry_after: float) -> Middleware:
    """The middleware turning every failure into an error answer; `retry_after` is sent with 503s."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            _check_text(request)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except ProtocolError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            return error_response(exc.status, _AIOHTTP_CODES.get(exc.status, "http_error"), exc.reason, headers)
        except psycopg.DataError as exc:
            # A value PostgreSQL cannot store or compare (out of range, invalid text): the client's to fix.
            reason = exc.diag.message_primary or str(exc)
            return error_response(400, "bad_parameter", f"a value in the request is not valid: {reason}")
        except (UnicodeError, RecursionError, OverflowError) as exc:
            # Hostile input that reached a parser without its own check (each known case is refused
            # where it is read, with a precise message). The request is still the client's to fix, so
            # 400, but the traceback is logged: it marks a check that is missing.
            log.warning("unchecked_input path=%s error=%s", request.path, type(exc).__name__, exc_info=True)
            return error_response(400, "bad_request", f"the request holds a value the collector cannot read: {exc}")
        except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
            event(log, "database_unavailable", logging.WARNING, path=request.path, error=str(exc).strip())
            seconds = str(max(1, round(retry_after)))
            return error_response(
                503,
                "unavailable",
                f"the database is unreachable or restarting; retry in {seconds} s",
                {"Retry-After": seconds},
            )
        except Exception:  # the last resort: log the bug with its traceback and answer 500; the server keeps serving
            log.exception("request_failed path=%s", request.path)
            return error_response(500, "internal_error", "the collector failed on this request; it has been logged")

    return errors


def _check_text(request: web.Request) -> None:
    """Refuse NUL characters in the path or query: no identifier has one, and PostgreSQL text cannot hold one."""
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise BadRequest("the path or query string contains a NUL character", code="bad_parameter")


async def add_server_time(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: stamp every answer with the collector's clock, for agents to measure their skew."""
    response.headers[HEADER_SERVER_TIME] = str(int(time.time()))


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds `limit` bytes (so a huge body is never held in memory)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def json_object(request: web.Request, limit: int = 64 * 1024) -> dict[str, Any]:
    """The request body as a JSON object, read by protocol/strict_json.py; 400 `bad_request` saying what is wrong.

    Every route with a JSON body reads it here: at most `limit` bytes, UTF-8, nested at most
    strict_json.MAX_DEPTH levels, no lone surrogate or NUL in a string, finite numbers only.
    """
    if request.content_type != "application/json":
        raise BadRequest(f"send a JSON body with Content-Type: application/json, got {request.content_type!r}")
    raw = await read_limited(request, limit)
    if raw is None:
        raise BadRequest(f"the JSON body is over {limit} bytes")
    try:
        return loads_object(raw, max_bytes=limit)
    except JsonRefused as exc:
        raise BadRequest(str(exc)) from None


def whole_number(text: str, name: str, low: int, high: int, *, code: str = "bad_parameter") -> int:
    """`text` (from a path or query) as an integer from `low` to `high`; 400 `code` naming `name` otherwise.

    Only ASCII digits: str.isdigit() and int() also take "²" (and fail on it) or "١٠" (Arabic-Indic ten).
    """
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, got {shown(text)}", code=code)
    return int(text)


def shown(value: Any) -> str:
    """`repr(value)` cut to 40 characters, for an error message: what a caller sent may be kilobytes long."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"
