"""Structured logs for every footfall process: one event per line, logfmt (default) or JSON.

Call sites log an event name and fields: `log.info("upload_ok", extra={"fields": {"records": 120}})`
is verbose, so use `event(log, "upload_ok", records=120)`. Secrets never reach a log: fields whose
name says key, token, secret, password or signature are masked here, whatever the caller passes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

LogFormat = Literal["logfmt", "json"]
_SECRET_NAME = re.compile(r"(key|token|secret|password|signature|authorization)", re.IGNORECASE)
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


class RateLimitedLog:
    """Logs an event at most once per `every` seconds per key, with how many were suppressed meanwhile.

    For what a device can repeat without end (garbage on a serial line, refused frames): one
    line a minute says it goes on, and how often, without filling the gateway's disk.
    """

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, name: str, level: int = logging.WARNING, *, key: str = "", **fields: object) -> None:
        """Log `name` unless the same (name, key) was logged less than `every` seconds ago."""
        slot = f"{name}\x1f{key}"
        now = self._clock()
        if now - self._last.get(slot, -self._every - 1) < self._every:
            self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
            return
        self._last[slot] = now
        suppressed = self._suppressed.pop(slot, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        event(self._log, name, level, **fields)


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _SECRET_NAME.search(k) and v not in (None, "") else v) for k, v in fields.items()}


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=agent.uploader event=upload_ok records=120`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a logfmt line."""
        pairs: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        pairs.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            pairs["exception"] = self.formatException(record.exc_info).replace("\n", " | ")
        return " ".join(f"{k}={_quote(v)}" for k, v in pairs.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        obj: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        obj.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def _quote(value: Any) -> str:
    text = "" if value is None else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)


def configure(level: str = "info", fmt: LogFormat = "logfmt") -> None:
    """Send every footfall log to stderr in the chosen format (journald takes stderr as is)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at INFO (aiohttp access lines, pymodbus) drowns the events that matter.
    for noisy in ("aiohttp.access", "pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
