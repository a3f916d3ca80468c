"""protocol/strict_json.py: the one JSON reader for bodies from the network."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from footfall.protocol.strict_json import MAX_DEPTH, MAX_INT, JsonRefused, loads, loads_object
from hypothesis import given
from hypothesis import strategies as st

LIMIT = 1 << 20


def refused(raw: bytes, *words: str) -> str:
    with pytest.raises(JsonRefused) as caught:
        loads(raw, max_bytes=LIMIT)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    return message


def test_nesting_is_bounded_before_parsing() -> None:
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, max_bytes=LIMIT) is not None
    refused(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested more than 32")
    refused(b'{"a":' * 100_000 + b"0" + b"}" * 100_000, "nested")  # no RecursionError
    refused(b"[" * 100_000, "nested")  # unbalanced, still no RecursionError


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"config": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"}'
    assert loads(text.encode(), max_bytes=LIMIT) == json.loads(text)


@pytest.mark.parametrize(("raw", "where"), [
    (b'{"hostname": "gw-\\ud800"}', "hostname"),
    (b'{"a": {"b": ["ok", "\\udfff"]}}', "a.b[1]"),
    (b'{"sources": [{"name": "\\udc80\\ud800"}]}', "sources[0].name"),
    (b'"\\ud800"', "the body"),
    (b'{"\\ud800": 1}', "a key in the body"),
])
def test_lone_surrogates_are_refused_naming_where(raw: bytes, where: str) -> None:
    assert refused(raw, "surrogate").startswith(where)


def test_a_surrogate_pair_is_one_character() -> None:
    assert loads(b'{"h": "\\ud83d\\ude00"}', max_bytes=LIMIT) == {"h": "\U0001f600"}


def test_nul_is_refused_in_strings_and_keys() -> None:
    refused(b'{"note": "a\\u0000b"}', "note", "NUL")
    refused(b'{"a\\u0000": 1}', "a key", "NUL")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_refused(number: bytes) -> None:
    refused(b'{"expires": %s}' % number, "expires", "finite")


def test_integers_fit_in_a_bigint() -> None:
    assert loads(b"[%d, %d]" % (MAX_INT, -MAX_INT), max_bytes=LIMIT) == [MAX_INT, -MAX_INT]
    refused(b'{"uses": %d}' % (MAX_INT + 1), "uses", "out of range")
    refused(b'{"uses": 1' + b"0" * 5000 + b"}", "not valid JSON")


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"name": "caf\xe9"}', ("UTF-8", "byte 13")),
    (b"\xff\xfe{\x00}\x00", ("UTF-8",)),
    ('{"a": 1}'.encode("utf-16"), ("UTF-8",)),
    (b"\xef\xbb\xbf{}", ("not valid JSON",)),
    (b"{'a': 1}", ("not valid JSON",)),
    (b"", ("not valid JSON",)),
])
def test_only_strict_utf8_json_is_read(raw: bytes, words: tuple[str, ...]) -> None:
    refused(raw, *words)


def test_the_size_is_bounded_and_an_object_can_be_required() -> None:
    with pytest.raises(JsonRefused, match="over 10 bytes"):
        loads(b'{"a": "12345"}', max_bytes=10)
    with pytest.raises(JsonRefused, match="must be a JSON object"):
        loads_object(b"[1]", max_bytes=LIMIT)


@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_are_read_or_refused_never_another_error(raw: bytes) -> None:
    with contextlib.suppress(JsonRefused):
        loads(raw, max_bytes=LIMIT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_INT, MAX_INT) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5).filter(lambda k: "\x00" not in k),
                                                                inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_every_storable_value_reads_as_the_standard_library_reads_it(value: Any) -> None:
    for raw in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert loads(raw, max_bytes=LIMIT) == json.loads(raw)
