"""The batch envelope: validation of every field, limits, and any byte string failing cleanly."""

from __future__ import annotations

import zlib
from typing import Any

import msgpack
import pytest
from footfall.protocol import envelope
from footfall.protocol.errors import BatchTooLarge, MalformedBatch, ProtocolError
from footfall.protocol.records import Count, Occupancy, SensorEvent, Transaction, from_wire, to_wire
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_772_960_400_000


def _body(obj: Any) -> bytes:
    return zlib.compress(msgpack.packb(obj))


def _envelope(records: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    env = {"v": 1, "agent": "agt_1", "seq_first": records[0]["seq"] if records else 1,
           "seq_last": records[-1]["seq"] if records else 1, "sent_at_ms": T0, "records": records}
    env.update(over)
    return env


def _count(seq: int, **over: Any) -> dict[str, Any]:
    rec = to_wire(Count("door-1", "main", T0, T0 + 60_000, 1, 0, seq=seq))
    rec.update(over)
    return rec


def test_round_trip_every_type() -> None:
    records = (
        Count("door-1", "main", T0, T0 + 60_000, 4, 3, seq=1),
        Occupancy("c", "z", T0, 5, seq=2),
        Transaction("pos", "t", T0, "void", 0, "JPY", seq=3),
        SensorEvent("door-1", T0, "counter_reset", "rebooted", seq=4),
    )
    batch = envelope.make_batch("agt_1", records, T0)
    assert envelope.decode_body(envelope.encode_body(batch)) == batch


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (_envelope([_count(1)], v=2), "version"),
        (_envelope([_count(1)], agent=""), "agent"),
        (_envelope([_count(2)], seq_first=1), "claims seq"),
        (_envelope([_count(1), _count(1)]), "does not increase"),
        (_envelope([]), "non-empty"),
        (_envelope([_count(1)], extra=1), "unknown keys"),
        (_envelope([_count(1, entries=-1)]), "negative"),
        (_envelope([_count(1, end_ms=T0)]), "after"),
        (_envelope([_count(1, sensor="")]), "sensor"),
        (_envelope([_count(1, entries=True)]), "integer"),
        (_envelope([_count(1, colour="red")]), "unknown fields"),
        (_envelope([{**_count(1), "type": "weather"}]), "unknown record type"),
        (_envelope([_count(0)], seq_first=0, seq_last=0), "invalid"),
        ([1, 2, 3], "map"),
    ],
)
def test_malformed_envelopes_name_the_problem(env: Any, fragment: str) -> None:
    with pytest.raises(MalformedBatch, match=fragment):
        envelope.decode_body(_body(env))


def test_transaction_rules() -> None:
    base = to_wire(Transaction("pos", "t", T0, "sale", 100, "EUR", seq=1))
    for bad in ({"currency": "eur"}, {"kind": "gift"}, {"amount_minor": 1.5}, {"items": -1}):
        with pytest.raises(MalformedBatch):
            from_wire({**base, **bad})


def test_gap_event_needs_its_range() -> None:
    with pytest.raises(MalformedBatch, match="lost_first"):
        from_wire(to_wire(SensorEvent("agent", T0, "gap", seq=9)))


def test_limits() -> None:
    with pytest.raises(BatchTooLarge):
        envelope.decode_body(b"\x00" * (envelope.MAX_BODY_BYTES + 1))
    bomb = zlib.compress(b"\x00" * (envelope.MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(BatchTooLarge):
        envelope.decode_body(bomb)
    with pytest.raises(MalformedBatch, match="truncated"):
        envelope.decode_body(_body(_envelope([_count(1)]))[:-4])
    with pytest.raises(MalformedBatch, match="after the end"):
        envelope.decode_body(_body(_envelope([_count(1)])) + b"tail")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_fail_cleanly(data: bytes) -> None:
    for body in (data, zlib.compress(data)):
        try:
            envelope.decode_body(body)
        except ProtocolError as exc:
            assert exc.status in (400, 413)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8), st.binary(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "agent", "seq_first", "seq_last", "sent_at_ms", "records", "x"]),
                       _values))
def test_any_msgpack_structure_fails_cleanly(obj: dict[str, Any]) -> None:
    try:
        envelope.decode_body(_body(obj))
    except ProtocolError as exc:
        assert exc.status == 400
