"""Bad input through the real HTTP endpoint: any body, any signing headers, get a clean 4xx and store nothing.

Hypothesis generates the input; a real collector (on its own loop thread) on real PostgreSQL
answers. The batch decoder is fuzzed behind a valid signature (so the bytes really reach it):
raw bytes, zlib streams of raw bytes, zlib streams of random msgpack, and valid envelopes with
fields swapped for random values. The signature check is fuzzed with random headers over a
valid body. Whatever comes in: a 4xx with the `{"error", "message"}` shape, never a 5xx, and
not one row written; a body that happens to be a valid batch is stored exactly as it says.
Bounded: a few hundred examples per property, no deadline per example.
"""

from __future__ import annotations

import base64
import time
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import psycopg
import pytest
from footfall.protocol.envelope import CONTENT_TYPE, decode_body, encode_body, make_batch
from footfall.protocol.errors import ProtocolError
from footfall.protocol.records import Count, to_wire
from footfall.protocol.signing import sign_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.threaded_collector import ThreadedCollector

# Real processes and real outages: on a busy machine a scenario can outlast the suite's 300 s limit per test.
pytestmark = pytest.mark.timeout(900)

INGEST = "/v1/ingest"
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
DATA_TABLES = (
    "people_counts", "occupancy", "transactions", "sensor_events",
    "counts_15m", "counts_day", "sales_15m", "sales_day", "sensors",
)
T0_MS = 1_772_960_400_000  # 2026-03-08T09:00Z

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(),
    st.text(max_size=20), st.binary(max_size=20),
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
RECORD_KEYS = ("type", "seq", "sensor", "line", "start_ms", "end_ms", "entries", "exits", "zone", "at_ms", "value",
               "terminal", "txn_id", "kind", "amount_minor", "currency", "items", "raw", "detail", "lost_first",
               "lost_last", "clock")


def _rows(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        out = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DATA_TABLES}  # type: ignore[index]
        out["hw_seq"] = conn.execute("SELECT coalesce(max(hw_seq), 0) FROM agents").fetchone()[0]  # type: ignore[index]
    return out


def _valid_record(seq: int) -> dict[str, Any]:
    return to_wire(Count("door", "main", T0_MS, T0_MS + 60_000, 3, 1, seq=seq))


Body = Callable[[str], bytes]


@st.composite
def mangled_envelopes(draw: st.DrawFn) -> dict[Any, Any]:
    """A valid envelope of valid records with some keys replaced, dropped or added (`agent` filled in later)."""
    records = [_valid_record(seq) for seq in range(1, draw(st.integers(1, 4)) + 1)]
    for record in records:
        for key in draw(st.lists(st.sampled_from(RECORD_KEYS), max_size=3)):
            if draw(st.booleans()):
                record[key] = draw(msgpack_values)
            else:
                record.pop(key, None)
    envelope: dict[Any, Any] = {"v": 1, "agent": None, "seq_first": 1, "seq_last": len(records),
                                "sent_at_ms": T0_MS, "records": records}
    for key in draw(st.lists(st.sampled_from([*envelope, "extra"]), max_size=2)):
        envelope[key] = draw(msgpack_values)
    return envelope


def _packed(envelope: dict[Any, Any], agent: str) -> bytes:
    if envelope.get("agent", "") is None:
        envelope = {**envelope, "agent": agent}
    return msgpack.packb(envelope, use_bin_type=True)


def _fixed(data: bytes) -> Body:
    return lambda agent: data


def _envelope(finish: Callable[[bytes], bytes]) -> Callable[[dict[Any, Any]], Body]:
    return lambda envelope: lambda agent: finish(_packed(envelope, agent))


bodies: st.SearchStrategy[Body] = st.one_of(
    st.binary(max_size=2048).map(_fixed),
    st.binary(max_size=2048).map(lambda b: _fixed(zlib.compress(b))),
    msgpack_values.map(lambda v: _fixed(zlib.compress(msgpack.packb(v, use_bin_type=True)))),
    mangled_envelopes().map(_envelope(zlib.compress)),
    # A valid stream with bytes after it, or cut short.
    mangled_envelopes().map(_envelope(lambda p: zlib.compress(p) + b"\0")),
    mangled_envelopes().map(_envelope(lambda p: zlib.compress(p)[:-3])),
)


def _signed(collector: ThreadedCollector, body: bytes) -> dict[str, str]:
    headers = sign_request(collector.key, "POST", INGEST, collector.agent_id, int(time.time()), body).as_dict()
    return {**headers, "Content-Type": CONTENT_TYPE}


def _expect_clean_error(status: int, answer: Any) -> None:
    assert 400 <= status < 500, (status, answer)
    assert isinstance(answer, dict) and set(answer) == {"error", "message"} and answer["message"], answer


def _valid(body: bytes, agent: str) -> int:
    """How many records the collector should take from `body` (0 if it must refuse it)."""
    try:
        batch = decode_body(body, now_ms=int(time.time() * 1000))
    except ProtocolError:
        return 0
    return len(batch.records) if batch.agent == agent else 0


def test_any_body_behind_a_valid_signature_gets_a_clean_4xx_and_stores_nothing(
    threaded_collector: ThreadedCollector,
) -> None:
    collector = threaded_collector
    before = _rows(collector.dsn)
    stored = 0

    @FUZZ
    @given(make=bodies)
    def post(make: Body) -> None:
        nonlocal stored
        body = make(collector.agent_id)
        status, answer = collector.post(INGEST, body, _signed(collector, body))
        if status == 200:
            # Only a body that really is a valid batch of this agent may be taken.
            assert _valid(body, collector.agent_id) == answer["accepted"] + answer["duplicates"] > 0, answer
            stored += answer["accepted"]
        else:
            _expect_clean_error(status, answer)

    post()
    after = _rows(collector.dsn)
    raw = ("people_counts", "occupancy", "transactions", "sensor_events")
    assert sum(after[t] - before[t] for t in raw) == stored, "rows were stored beyond the valid batches' records"
    if stored == 0:
        assert after == before, "a refused body changed the database"


def test_any_signing_headers_get_a_clean_4xx_and_store_nothing(threaded_collector: ThreadedCollector) -> None:
    collector = threaded_collector
    before = _rows(collector.dsn)
    body = encode_body(make_batch(collector.agent_id, [Count("door", "main", T0_MS, T0_MS + 60_000, 1, 0, seq=1)],
                                  T0_MS))
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=100)
    now = int(time.time())

    @FUZZ
    @given(
        agent=st.one_of(printable, st.just(collector.agent_id)),
        timestamp=st.one_of(printable, st.integers(now - 10**6, now + 10**6).map(str), st.just(str(now))),
        signature=st.one_of(
            printable,
            st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
            # A real signature, but over other bytes or another path.
            st.binary(max_size=32).map(
                lambda other: sign_request(collector.key, "POST", INGEST, collector.agent_id, now, other).signature
            ),
            st.just(sign_request(collector.key, "POST", "/v1/other", collector.agent_id, now, body).signature),
        ),
        content_type=st.one_of(st.just(CONTENT_TYPE), printable),
        drop=st.sets(st.sampled_from(("X-Footfall-Agent", "X-Footfall-Timestamp", "X-Footfall-Signature"))),
    )
    def post(agent: str, timestamp: str, signature: str, content_type: str, drop: set[str]) -> None:
        headers = {
            "X-Footfall-Agent": agent, "X-Footfall-Timestamp": timestamp, "X-Footfall-Signature": signature,
            "Content-Type": content_type,
        }
        for name in drop:
            headers.pop(name)
        status, answer = collector.post(INGEST, body, headers)
        _expect_clean_error(status, answer)

    post()
    assert _rows(collector.dsn) == before
