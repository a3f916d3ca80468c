"""footfall/logs.py: one event per line, whatever a field holds."""

from __future__ import annotations

import json
import logging

from footfall.logs import JsonFormatter, LogfmtFormatter, RateLimitedLog


def _record(**fields: object) -> logging.LogRecord:
    record = logging.LogRecord("footfall.test", logging.WARNING, __file__, 1, "batch_rejected", None, None)
    record.fields = fields
    return record


def test_a_field_ending_in_a_newline_is_quoted_and_stays_on_its_line() -> None:
    # A value a caller sent (an agent id header, a site id) must not forge a second log line.
    line = LogfmtFormatter().format(_record(agent="agt_x\nlevel=info event=forged", site="lyon\n", ok="plain-1"))
    assert "\n" not in line
    assert 'site="lyon\\n"' in line and "ok=plain-1" in line
    assert 'agent="agt_x\\nlevel=info event=forged"' in line


def test_surrogates_from_undecodable_headers_are_escaped() -> None:
    line = LogfmtFormatter().format(_record(agent="agt_\udcff"))
    assert line.encode("utf-8")  # a handler writing UTF-8 does not fail on it
    assert json.loads(JsonFormatter().format(_record(agent="agt_\udcff")))["agent"] == "agt_\udcff"


def test_a_rate_limited_event_is_logged_once_per_period_with_what_it_suppressed() -> None:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("footfall.test.rate_limited")
    logger.setLevel(logging.INFO)
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    now = [100.0]
    limited = RateLimitedLog(logger, every=60.0, clock=lambda: now[0])
    try:
        for _ in range(3):
            limited("serial_garbage", key="door", bytes=4)
        limited("serial_garbage", key="till", bytes=1)  # another key has its own period
        now[0] += 60.0
        limited("serial_garbage", key="door", bytes=2)
    finally:
        logger.removeHandler(handler)
    assert [(r.getMessage(), r.fields) for r in records] == [  # type: ignore[attr-defined]
        ("serial_garbage", {"bytes": 4}),
        ("serial_garbage", {"bytes": 1}),
        ("serial_garbage", {"bytes": 2, "suppressed": 2}),
    ]
