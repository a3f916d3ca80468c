"""`format = "binary"`: fixed-layout binary frames (raw bytes, or written as ASCII hex), checked, then read.

```toml
[binary]
encoding = "raw"                 # raw, or hex: the frame is ASCII hex, two characters a byte
length = 11                      # the frame's length in bytes (after hex decoding); 0 = any
header = "PC"                    # the frame must start with these bytes (U+00XX for byte 0xXX)
match = { offset = 0, values = [16, 17] }   # frames whose byte there is another value carry
                                 # no reading for us (another device type on a shared receiver)
checks = [{ checksum = "sum8", over = [0, 13], at = 13 }]   # every check must pass
[binary.values]                  # named values, read by [fields] paths
entries = { offset = 6, size = 2, order = "big" }
count = { offset = 5, size = 3, order = "little", divide = 2 }
serial = { offset = 1, size = 4, shift = 2 }
```

A value: `offset`, `size` (1-8 bytes), `order` (big or little), `signed`, then `shift` (right,
in bits), `mask`, and `divide` (whole-number division rounding down: a value that is always
read divided keeps its remainder in the device's own running total, so nothing is lost; see
firmware-adapters/pointsix-beam). A bad check refuses the frame (DecodeError, nothing stored).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from footfall.agent.decode import checksums
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.formats.named import NamedValues, unknown_keys


@dataclass(frozen=True, slots=True)
class Value:
    """Where one named value is in the frame and how it is read."""

    offset: int
    size: int
    order: Literal["big", "little"] = "big"
    signed: bool = False
    shift: int = 0
    mask: int = 0
    divide: int = 1

    def read(self, frame: bytes) -> int:
        """The value in `frame` (which is long enough: checked by the caller)."""
        raw = int.from_bytes(frame[self.offset : self.offset + self.size], self.order, signed=self.signed)
        raw >>= self.shift
        if self.mask:
            raw &= self.mask
        return raw // self.divide


@dataclass(frozen=True, slots=True)
class Check:
    """A checksum over bytes [start, stop) stored at `at`."""

    checksum: str
    start: int
    stop: int
    at: int
    order: Literal["big", "little"] = "big"


@dataclass(frozen=True, slots=True)
class BinaryOptions:
    """`[binary]`, checked."""

    encoding: Literal["raw", "hex"] = "raw"
    length: int = 0
    header: bytes = b""
    match_offset: int = -1
    match_values: frozenset[int] = frozenset()
    checks: tuple[Check, ...] = ()
    values: Mapping[str, Value] | None = None

    @property
    def needed(self) -> int:
        """The shortest frame every value and check fits in."""
        ends = [v.offset + v.size for v in (self.values or {}).values()]
        ends += [max(c.stop, c.at + checksums.width(c.checksum)) for c in self.checks]
        return max([len(self.header), self.match_offset + 1, *ends])


def _int(table: Mapping[str, Any], key: str, default: int, where: str, add: Callable[[str, str], None]) -> int:
    value = table.get(key, default)
    if type(value) is not int or value < 0:
        add(f"{where}.{key}", f"must be a whole number >= 0, got {value!r}")
        return default
    return value


class BinaryExtractor(NamedValues):
    """Binary frames with a fixed layout; one reading per frame."""

    name = "binary"

    def parse_options(self, table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> BinaryOptions:
        """Read `[binary]`."""
        unknown_keys(table, {"encoding", "length", "header", "match", "checks", "values"}, where, add)
        encoding = table.get("encoding", "raw")
        if encoding not in ("raw", "hex"):
            add(f"{where}.encoding", f"must be raw or hex, got {encoding!r}")
            encoding = "raw"
        header = table.get("header", "")
        try:
            header_bytes = header.encode("latin-1") if isinstance(header, str) else b""
        except UnicodeEncodeError:
            add(f"{where}.header", "only characters U+0000-U+00FF (one byte each)")
            header_bytes = b""
        match = table.get("match", {})
        match_offset, match_values = -1, frozenset[int]()
        if match:
            if not isinstance(match, dict) or not isinstance(match.get("values"), list):
                add(f"{where}.match", "must be { offset = 0, values = [17] }")
            else:
                match_offset = _int(match, "offset", 0, f"{where}.match", add)
                match_values = frozenset(v for v in match["values"] if type(v) is int)
        checks = []
        for index, raw in enumerate(table.get("checks", [])):
            at = f"{where}.checks[{index}]"
            if not isinstance(raw, dict) or raw.get("checksum") not in checksums.CHECKSUMS:
                add(f"{at}.checksum", f"must be one of {', '.join(checksums.CHECKSUMS)}")
                continue
            over = raw.get("over")
            if not (isinstance(over, list) and len(over) == 2 and all(type(x) is int and x >= 0 for x in over)):
                add(f"{at}.over", "must be [from, to): the byte range the checksum covers")
                continue
            order = raw.get("order", "big")
            if order not in ("big", "little"):
                add(f"{at}.order", "must be big or little")
                continue
            checks.append(Check(raw["checksum"], over[0], over[1], _int(raw, "at", 0, at, add), order))
        values: dict[str, Value] = {}
        raw_values = table.get("values", {})
        if not isinstance(raw_values, dict) or not raw_values:
            add(f"{where}.values", "must name at least one value, e.g. entries = { offset = 6, size = 2 }")
            raw_values = {}
        for name, spec in raw_values.items():
            at = f"{where}.values.{name}"
            if not isinstance(spec, dict):
                add(at, "must be a table such as { offset = 6, size = 2 }")
                continue
            unknown_keys(spec, {"offset", "size", "order", "signed", "shift", "mask", "divide"}, at, add)
            size = _int(spec, "size", 1, at, add)
            divide = _int(spec, "divide", 1, at, add)
            order = spec.get("order", "big")
            if not 1 <= size <= 8 or divide < 1 or order not in ("big", "little"):
                add(at, "size must be 1-8, divide at least 1, order big or little")
                continue
            values[name] = Value(
                _int(spec, "offset", 0, at, add),
                size,
                order,
                bool(spec.get("signed", False)),
                _int(spec, "shift", 0, at, add),
                _int(spec, "mask", 0, at, add),
                divide,
            )
        return BinaryOptions(
            encoding,
            _int(table, "length", 0, where, add),
            header_bytes,
            match_offset,
            match_values,
            tuple(checks),
            values,
        )

    def items(self, options: BinaryOptions, payload: bytes) -> list[tuple[str, Any]]:
        """Decode, check and read one frame; a frame `match` excludes gives no item."""
        frame = payload
        if options.encoding == "hex":
            try:
                frame = binascii.unhexlify(payload.strip())
            except (binascii.Error, ValueError):
                raise DecodeError(f"frame is not ASCII hex: {_show(payload)}") from None
        if options.length and len(frame) != options.length:
            raise DecodeError(f"frame is {len(frame)} bytes, expected {options.length}: {_show(frame)}")
        if len(frame) < options.needed:
            raise DecodeError(f"frame is {len(frame)} bytes, too short for its fields ({options.needed})")
        if options.header and not frame.startswith(options.header):
            raise DecodeError(f"frame does not start with {options.header!r}: {_show(frame)}")
        for check in options.checks:
            size = checksums.width(check.checksum)
            carried = int.from_bytes(frame[check.at : check.at + size], check.order)
            computed = checksums.compute(check.checksum, frame[check.start : check.stop])
            if carried != computed:
                raise DecodeError(
                    f"{check.checksum} mismatch: frame carries {carried:#x}, bytes give {computed:#x}: {_show(frame)}"
                )
        if options.match_offset >= 0 and frame[options.match_offset] not in options.match_values:
            return []
        return [("frame", {name: value.read(frame) for name, value in (options.values or {}).items()})]


def _show(data: bytes) -> str:
    text = data.hex(" ")
    return text if len(text) <= 60 else text[:57] + "..."
