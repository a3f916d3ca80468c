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
from typing import Any, Literal

LogFormat = Literal["logfmt", "json"]
_SECRET_NAME = re.compile(r"(key|token|secret|password|signature|authorization)", re.IGNORECASE)
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


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
