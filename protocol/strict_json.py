"""JSON from the network, read strictly: bounded in size and depth, UTF-8 only, every string
storable, every number finite and within 64 bits (pure: no I/O).

Python's json module recurses once per nesting level (a body of a few thousand `[` raises
RecursionError), accepts lone UTF-16 surrogates (`"\\ud800"`, which no UTF-8 text and no
PostgreSQL column can hold) and NUL, takes the non-standard NaN and Infinity, and reads 1e400
as infinity. `loads` refuses each with a JsonRefused naming what was wrong and where. Every
JSON body the collector reads goes through it (collector/http.py `json_object`, the fleet
messages of fleet.py, the list cursors), so a new route gets the same rules without asking.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

# Deeper than any message or setting needs (opening hours are 4 levels), far below Python's recursion limit.
MAX_DEPTH = 32
# PostgreSQL's bigint: every integer the collector stores fits in it.
MAX_INT = 2**63 - 1

# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class JsonRefused(ValueError):
    """The text is not JSON this system accepts; the message says why, naming the field when there is one."""


def loads(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `raw`; JsonRefused when it is too big, too deep, not UTF-8 or not strict JSON."""
    if len(raw) > max_bytes:
        raise JsonRefused(f"the body is over {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"the body is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})") from None
    if _depth(text, max_depth) > max_depth:
        raise JsonRefused(f"the body is nested more than {max_depth} levels deep")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise JsonRefused(f"the body is not valid JSON: {exc}") from None
    _check_values(value, "")
    return value


def loads_object(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """`loads`, and the value must be an object."""
    value = loads(raw, max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise JsonRefused("the body must be a JSON object")
    return value


def _depth(text: str, max_depth: int) -> int:
    """How deeply arrays and objects nest in `text`, counted without recursion (brackets inside strings are not)."""
    if text.count("[") + text.count("{") <= max_depth:
        return 0  # the common case: too few brackets to matter, no need to look closer
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _check_values(value: Any, where: str) -> None:
    """Refuse a string (or key) holding NUL or a lone surrogate, a non-finite number or an integer beyond 64 bits,
    naming where it is (the recursion is bounded by the depth checked before parsing)."""
    if isinstance(value, str):
        _check_string(value, where or "the body")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise JsonRefused(f"{where or 'the body'} is not a finite number "
                              "(NaN, Infinity and numbers beyond ±1.8e308 are refused)")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INT:
            raise JsonRefused(f"{where or 'the body'} is a number out of range: integers are at most {MAX_INT}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(key, f"a key in {where or 'the body'}")
            _check_values(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, f"{where}[{i}]")


def _check_string(text: str, where: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    if found.group() == "\x00":
        raise JsonRefused(f"{where} holds a NUL character (\\u0000), which stored text cannot hold")
    raise JsonRefused(
        f"{where} holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x}), which is not a character; "
        "send the pair it belongs to, or valid UTF-8"
    )
