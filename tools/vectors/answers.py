"""The answer vectors of `protocol/vectors/answers/*.json` (SPEC.md sections 6 and 7).

One per row of section 6's table: the answer as the collector sends it (status, headers, body)
and what an agent does with it (`protocol/answers.interpret`), so that another implementation
can check both its reading of the 200 answer and its choice of action.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from footfall.protocol.answers import Action, ErrorAnswer, IngestAnswer, interpret
from footfall.protocol.signing import HEADER_SERVER_TIME

from . import VECTORS_DIR

FOLDER = VECTORS_DIR / "answers"
NOW = 1767225600  # 2026-01-01T00:00:00Z: the agent's clock when it sent the upload

# name -> (description, status, extra headers, body)
ANSWERS: dict[str, tuple[str, int, dict[str, str], bytes]] = {
    "ingest-ok": (
        "Committed: 12 records new, 3 the collector had already; delete everything up to seq 4411.",
        200, {}, IngestAnswer(accepted=12, duplicates=3, acked_seq=4411).encode(),
    ),
    "malformed": (
        "A record is refused: halve the batch down to that record and set it aside.",
        400, {}, ErrorAnswer("malformed_batch", "record 3: count.entries must not be negative, got -1").encode(),
    ),
    "clock": (
        "The request timestamp is outside the window: the collector's clock is an hour ahead of the agent's.",
        401, {HEADER_SERVER_TIME: str(NOW + 3600)},
        ErrorAnswer("timestamp_out_of_window", "request timestamp is -3600 s from the collector's clock; the window "
                    "is ±300 s").encode(),
    ),
    "revoked": (
        "The agent was revoked: keep the data, say so, enroll again.",
        401, {}, ErrorAnswer("revoked_agent", "agent 'agt_vector0001' has been revoked; enroll it again").encode(),
    ),
    "too-large": (
        "Over a limit of section 3: split the batch and send the halves in order.",
        413, {}, ErrorAnswer("batch_too_large", "batch has 20001 records; the limit is 20000").encode(),
    ),
    "rate-limited": (
        "Too many requests: wait Retry-After seconds.",
        429, {"Retry-After": "7"}, ErrorAnswer("rate_limited", "too many requests").encode(),
    ),
    "unavailable": (
        "The database is away: wait Retry-After (here an HTTP date, 30 s after the request).",
        503, {"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"},
        ErrorAnswer("unavailable", "the database is unreachable or restarting; retry in 30 s").encode(),
    ),
    "fault": (
        "A collector fault: retry with exponential backoff and jitter (after_s null).",
        500, {}, ErrorAnswer("internal_error", "the collector failed on this request; it has been logged").encode(),
    ),
}


def describe(action: Action) -> dict[str, Any]:
    """An action as JSON: its name in snake case and its fields."""
    name = re.sub(r"(?<!^)([A-Z])", r"_\1", type(action).__name__).lower()
    return {"action": name, **asdict(action)}


def build() -> dict[str, dict[str, Any]]:
    """Every answer vector, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for name, (description, status, extra, body) in ANSWERS.items():
        headers = {HEADER_SERVER_TIME: str(NOW), **extra}
        out[name] = {
            "name": name, "description": description, "now": NOW,
            "status": status, "headers": headers, "body": body.decode(),
            "expect": describe(interpret(status, headers, body, NOW)),
        }
    return out
