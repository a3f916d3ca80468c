"""The batch envelope: validation of every field, limits, and any byte string failing cleanly."""

from __future__ import annotations

import re
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from footfall.protocol import envelope, records
from footfall.protocol.errors import BatchTooLarge, MalformedBatch, ProtocolError
from footfall.protocol.records import (
    MAX_RAW_CHARS,
    Count,
    Occupancy,
    SensorEvent,
    Transaction,
    from_wire,
    to_wire,
)
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
    # A stream of a valid shape that inflates past the limit is refused as too large, once it gets there.
    long_receipt = to_wire(Transaction("pos", "t", T0, "sale", 1, "EUR", raw="x" * MAX_RAW_CHARS, seq=1))
    records = [{**long_receipt, "seq": seq} for seq in range(1, 1000)]
    with pytest.raises(BatchTooLarge, match="decompresses to more than"):
        envelope.decode_body(_body(_envelope(records)))
    with pytest.raises(BatchTooLarge, match="records"):
        envelope.decode_body(_body(_envelope([_count(seq) for seq in range(1, envelope.MAX_RECORDS + 2)])))
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


# The protocol's bounds (SPEC.md section 2): the agent's intake and the collector both refuse what they refuse.

_BEYOND_BOUNDS = [
    (Count("door-1", "main", records.EARLIEST_MS - 60_000, records.EARLIEST_MS, 1, 0, seq=1), "2000-01-01"),
    (Occupancy("c", "z", records.LATEST_MS, 5, seq=1), "2100-01-01"),
    (Count("door-1", "main", T0, T0 + 60_000, records.MAX_COUNT + 1, 0, seq=1), "at most 1000000000"),
    (Occupancy("c", "z", T0, records.MAX_COUNT + 1, seq=1), "at most 1000000000"),
    (Transaction("pos", "t", T0, "sale", records.MAX_AMOUNT_MINOR + 1, "EUR", seq=1), "1000000000000"),
    (Transaction("pos", "t", T0, "sale", 1, "EUR", items=records.MAX_COUNT + 1, seq=1), "items"),
    (Transaction("pos", "t", T0, "sale", 1, "EUR\n", seq=1), "ISO 4217"),
    (Transaction("pos", "t", T0, "sale", 1, "EUR", raw="x" * (records.MAX_RAW_CHARS + 1), seq=1), "32768"),
    (Transaction("pos", "t", T0, "sale", 1, "EUR", raw="CAFÉ\x00\x1b@", seq=1), "U+0000"),
    (Transaction("pos", "t", T0, "sale", 1, "EUR", raw="line\r\n", seq=1), "U+000D"),
    (SensorEvent("door-1", T0, "error", "y" * (records.MAX_DETAIL_CHARS + 1), seq=1), "4096"),
    (SensorEvent("door-1", T0, "error", "\x1b[31mred", seq=1), "U+001B"),
    (SensorEvent("door-1", T0, "error", "half a \ud800 pair", seq=1), "U+D800"),
    (Count("d" * (records.MAX_NAME_CHARS + 1), "main", T0, T0 + 60_000, 1, 0, seq=1), "1-128 printable"),
]


@pytest.mark.parametrize(("record", "fragment"), _BEYOND_BOUNDS, ids=[f for _, f in _BEYOND_BOUNDS])
def test_records_beyond_the_protocols_bounds_are_refused_naming_the_bound(record: Any, fragment: str) -> None:
    with pytest.raises(MalformedBatch, match=re.escape(fragment)):
        records.validate(record)
    with pytest.raises(MalformedBatch, match=re.escape(fragment)):
        from_wire(to_wire(record))


def test_texts_keep_newlines_and_tabs_and_names_their_full_length() -> None:
    receipt = "CAFÉ DU COIN\n\tCroissant  4.50\n" + "x" * (records.MAX_RAW_CHARS - 31)
    records.validate(Transaction("pos", "t", T0, "sale", 1, "EUR", raw=receipt, seq=1))
    records.validate(SensorEvent("door-1", T0, "error", "d" * records.MAX_DETAIL_CHARS, seq=1))
    records.validate(Count("d" * records.MAX_NAME_CHARS, "main", T0, T0 + 60_000, records.MAX_COUNT, 0, seq=1))
    # A refused value is quoted cut short: a 2 MB detail does not come back in the answer.
    with pytest.raises(MalformedBatch) as caught:
        records.validate(Count("d" * 2_000_000, "main", T0, T0 + 60_000, 1, 0, seq=1))
    assert len(caught.value.message) < 200


def test_a_record_from_the_future_is_refused_by_the_readers_clock() -> None:
    now = T0
    soon = Count("door-1", "main", now + records.MAX_FUTURE_MS - 60_000, now + records.MAX_FUTURE_MS, 1, 0, seq=1)
    late = Occupancy("c", "z", now + records.MAX_FUTURE_MS + 1, 5, seq=2)
    assert envelope.decode_body(_body(_envelope([to_wire(soon)])), now_ms=now).records == (soon,)
    with pytest.raises(MalformedBatch, match=r"record 1: occupancy.at_ms .* ahead of the receiver's clock"):
        envelope.decode_body(_body(_envelope([to_wire(soon), to_wire(late)])), now_ms=now)
    # Without a clock (the vectors, a tool reading a file) only the fixed bounds apply.
    envelope.decode_body(_body(_envelope([to_wire(soon), to_wire(late)])))


def test_the_agents_own_store_reads_back_what_it_took_under_any_rule() -> None:
    # Held readings carry an untrusted clock's time (1970 on a gateway without RTC), and a buffer may
    # hold records taken before a rule existed: reading them back must work; the collector validates.
    held = Count("door-1", "main", 1_000, 61_000, 1, 0, seq=7)
    old = Transaction("pos", "t", T0, "sale", 1, "EUR", raw="\x1b@receipt\x00", seq=8)
    assert envelope.unpack_record(envelope.pack_record(held)) == held
    assert envelope.unpack_record(envelope.pack_record(old)) == old
    with pytest.raises(MalformedBatch, match="integer"):
        envelope.unpack_record(msgpack.packb({**to_wire(held), "entries": "3"}))


def test_a_batch_may_span_at_most_max_months() -> None:
    def month(i: int) -> int:
        return int(datetime(2024, 1 + i, 15, tzinfo=UTC).timestamp() * 1000)

    within = [_count(i + 1, start_ms=month(i), end_ms=month(i) + 60_000) for i in range(envelope.MAX_MONTHS)]
    assert len(envelope.decode_body(_body(_envelope(within))).records) == envelope.MAX_MONTHS
    last = month(envelope.MAX_MONTHS)
    beyond = [*within, _count(envelope.MAX_MONTHS + 1, start_ms=last, end_ms=last + 60_000)]
    with pytest.raises(BatchTooLarge, match=f"more than {envelope.MAX_MONTHS} calendar months"):
        envelope.decode_body(_body(_envelope(beyond)))


def _nesting_bomb(elements: int, width: int = 20_000) -> bytes:
    """The issue's body, scaled down: `records` holds arrays of `width` empty arrays, one byte each."""
    head = msgpack.packb({"v": 1, "agent": "agt_1", "seq_first": 1, "seq_last": 1, "sent_at_ms": T0})
    parts = [b"\x86", head[1:], msgpack.packb("records"), b"\xdc" + elements.to_bytes(2, "big")]
    parts += [b"\xdc" + width.to_bytes(2, "big") + b"\x90" * width] * elements
    return zlib.compress(b"".join(parts), 9)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_nesting_bomb(100), "record 0: 20000 exceeds max_array_len"),
        (zlib.compress(b"\x00" * envelope.MAX_PAYLOAD_BYTES, 9), "payload must be a msgpack map"),
        (_body(_envelope([{**_count(1), "line": [[] for _ in range(1000)]}])), "max_array_len"),
        (_body(_envelope([{**_count(1), "line": {"a": {"b": 1}}}])), "scalars"),
        (_body(_envelope([{**_count(1), "line": []}])), "scalars"),
    ],
    ids=["nested-arrays", "zeros", "array-in-a-record", "map-in-a-record", "empty-array-in-a-record"],
)
def test_a_small_body_describing_a_huge_structure_is_refused_in_bounded_memory(body: bytes, fragment: str) -> None:
    # The nested-array body of the issue (46.8 KB, decoded into 2.48 GB) scaled to 2 MB of arrays: the
    # decoder refuses at the first container where no container belongs, having inflated a chunk.
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as refused:
            envelope.decode_body(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"decoding a {len(body)}-byte body peaked at {peak} bytes"
    assert refused.value.code == "malformed_batch"
    assert fragment in refused.value.message


def test_keys_are_strings_and_appear_once() -> None:
    twice = b"\x86" + msgpack.packb("v") + msgpack.packb(1) + msgpack.packb("v") + msgpack.packb(1)
    with pytest.raises(MalformedBatch, match="twice"):
        envelope.decode_body(zlib.compress(twice))
    with pytest.raises(MalformedBatch, match="not a string"):
        envelope.decode_body(zlib.compress(b"\x81\x01\x01"))
    record = b"\x82" + msgpack.packb("type") + msgpack.packb("count") + msgpack.packb("type") + msgpack.packb("count")
    head = msgpack.packb({"v": 1, "agent": "agt_1", "seq_first": 1, "seq_last": 1, "sent_at_ms": T0})
    with pytest.raises(MalformedBatch, match="record 0: a record has a key twice"):
        envelope.decode_body(zlib.compress(b"\x86" + head[1:] + msgpack.packb("records") + b"\x91" + record))
