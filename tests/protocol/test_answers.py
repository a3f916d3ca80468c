"""What an agent does with each answer to an upload (SPEC.md §6), from a table: no server, no clock."""

from __future__ import annotations

import pytest
from footfall.protocol.answers import (
    Ack,
    Action,
    ErrorAnswer,
    FixClock,
    IngestAnswer,
    Isolate,
    MalformedAnswer,
    Reenroll,
    Retry,
    Split,
    interpret,
    retry_after,
    server_time,
)
from footfall.protocol.signing import HEADER_SERVER_TIME

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _error(code: str, message: str = "") -> bytes:
    return ErrorAnswer(code, message).encode() if message else f'{{"error": "{code}"}}'.encode()


TABLE: list[tuple[str, int, dict[str, str], bytes, Action]] = [
    ("committed", 200, {}, b'{"accepted": 12, "duplicates": 3, "acked_seq": 4411}', Ack(IngestAnswer(12, 3, 4411))),
    ("committed, counts left out", 200, {}, b'{"acked_seq": 7}', Ack(IngestAnswer(0, 0, 7))),
    ("any 2xx", 202, {}, b'{"accepted": 1, "duplicates": 0, "acked_seq": 1}', Ack(IngestAnswer(1, 0, 1))),
    ("2xx without acked_seq", 200, {}, b'{"accepted": 1}',
     Retry("the collector answered 200 without an acked_seq: '{\"accepted\": 1}'")),
    ("2xx with acked_seq a string", 200, {}, b'{"acked_seq": "7"}',
     Retry("the collector answered 200 without an acked_seq: '{\"acked_seq\": \"7\"}'")),
    ("2xx with acked_seq a bool", 200, {}, b'{"acked_seq": true}',
     Retry("the collector answered 200 without an acked_seq: '{\"acked_seq\": true}'")),
    ("2xx not JSON", 200, {}, b"<html>ok</html>",
     Retry("the collector answered 200 without an acked_seq: '<html>ok</html>'")),
    ("over a limit", 413, {}, _error("batch_too_large", "over 20000 records"), Split("over 20000 records")),
    ("a proxy's 413", 413, {}, b"<html>Too Large</html>", Split("<html>Too Large</html>")),
    ("malformed", 400, {}, _error("malformed_batch", "record 3: count.entries must not be negative"),
     Isolate("record 3: count.entries must not be negative")),
    ("too many sensors", 400, {}, _error("too_many_sensors", "at most 100"), Isolate("at most 100")),
    ("clock behind", 401, {HEADER_SERVER_TIME: str(int(NOW) + 3600)}, _error("timestamp_out_of_window", "off"),
     FixClock(3600.0, "off")),
    ("clock ahead", 401, {HEADER_SERVER_TIME: str(int(NOW) - 600)}, _error("timestamp_out_of_window", "off"),
     FixClock(-600.0, "off")),
    ("clock, no server time", 401, {}, _error("timestamp_out_of_window", "off"),
     Retry("the collector finds the request clock wrong (off) but sent no time to set it by")),
    ("clock, unreadable server time", 401, {HEADER_SERVER_TIME: "soon"}, _error("timestamp_out_of_window", "off"),
     Retry("the collector finds the request clock wrong (off) but sent no time to set it by")),
    ("revoked", 401, {}, _error("revoked_agent", "revoked"), Reenroll("revoked_agent", "revoked")),
    ("unknown", 401, {}, _error("unknown_agent"), Reenroll("unknown_agent", "unknown_agent")),
    ("bad signature", 401, {}, _error("bad_signature", "no"), Reenroll("bad_signature", "no")),
    ("a proxy's 401", 401, {}, b"Unauthorized", Reenroll("", "Unauthorized")),
    ("rate limited", 429, {"Retry-After": "7"}, _error("rate_limited", "slow down"),
     Retry("collector busy (429): slow down", 7.0)),
    ("unavailable, HTTP date", 503, {"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}, _error("unavailable", "db"),
     Retry("collector busy (503): db", 30.0)),
    ("unavailable, no Retry-After", 503, {}, _error("unavailable", "db"), Retry("collector busy (503): db")),
    ("a fault", 500, {"Retry-After": "7"}, _error("internal_error", "logged"), Retry("collector answered 500: logged")),
    ("a proxy's 502", 502, {}, b"Bad Gateway", Retry("collector answered 502: Bad Gateway")),
    ("wrong content type", 415, {}, _error("unsupported_media_type", "no"), Retry("collector answered 415: no")),
    ("not UTF-8", 500, {}, b"\xff\xfe boom", Retry("collector answered 500: \ufffd\ufffd boom")),
]


@pytest.mark.parametrize(("status", "headers", "body", "action"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_each_answer_has_one_action(status: int, headers: dict[str, str], body: bytes, action: Action) -> None:
    assert interpret(status, headers, body, NOW) == action


def test_a_long_answer_is_quoted_not_repeated() -> None:
    action = interpret(502, {}, b"x" * 100_000, NOW)
    assert isinstance(action, Retry) and len(action.reason) < 250


def test_the_ingest_answer_both_ways() -> None:
    answer = IngestAnswer(accepted=12, duplicates=3, acked_seq=4411)
    assert answer.encode() == b'{"accepted": 12, "duplicates": 3, "acked_seq": 4411}'
    assert IngestAnswer.decode(answer.encode()) == answer
    for bad in (b"", b"[]", b'{"acked_seq": -1}', b'{"acked_seq": 1.5}', b'{"acked_seq": 1e400}'):
        with pytest.raises(MalformedAnswer):
            IngestAnswer.decode(bad)


def test_error_answers_both_ways() -> None:
    answer = ErrorAnswer("malformed_batch", "record 3: bad")
    assert ErrorAnswer.decode(answer.encode()) == answer
    assert ErrorAnswer.decode(b'{"error": "rate_limited"}') == ErrorAnswer("rate_limited", "rate_limited")
    assert ErrorAnswer.decode(b'{"error": 5, "message": ["x"]}') == ErrorAnswer("", '{"error": 5, "message": ["x"]}')


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7", 0) == 7
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480) == 10
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412500) == 0, "a date gone by: at once"
    assert retry_after("-3", 0) == 0
    assert retry_after("soon", 0) is None
    assert retry_after("inf", 0) is None
    assert retry_after(None, 0) is None


def test_server_time() -> None:
    assert server_time({HEADER_SERVER_TIME: "1767225600"}) == 1767225600.0
    assert server_time({HEADER_SERVER_TIME: "nan"}) is None
    assert server_time({HEADER_SERVER_TIME: ""}) is None
    assert server_time({}) is None
