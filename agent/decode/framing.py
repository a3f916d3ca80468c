"""Cutting a byte stream into frames, as a profile's `[framing]` says. Pure: no I/O, no clock.

A serial line delivers bytes in whatever chunks the UART and the kernel make: half a frame,
three frames and a half, or noise from a wrong baud rate. `Framer.feed` takes any chunk and
returns what it could cut so far:

- `line`: frames end with `terminator` (not part of the frame); CR and LF around a line are
  stripped, empty lines ignored. A line longer than `max_length` is garbage up to the next
  terminator.
- `fixed`: frames start with a known `header`; each kind of frame has a fixed `length`, or a
  length field (`length_at`, `length_size`, `length_order`; the frame is the field's value
  plus `length_adds` bytes), and optionally a `checksum` over every byte before it (its last
  bytes). A kind marked `skip` is a real frame that carries no reading (Terabee distance
  frames): dropped quietly, not garbage.
- `delimited`: a frame runs from `start` to `end` plus `end_extra` bytes (ESC/POS: `ESC @` ...
  `GS V m`); bytes between frames are ignored quietly (printer status queries), a frame longer
  than `max_length` is garbage.

Resynchronising: bytes before a header, a frame whose checksum fails (then only its first byte
is dropped and the search starts again one byte later, so a real frame that began inside the
bad one is still found), and a partial frame left when the device goes away are garbage:
returned as such so the transport counts them. Garbage never becomes a frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from footfall.agent.decode import checksums

PieceKind = Literal["frame", "skipped", "garbage"]
_MODES = ("line", "fixed", "delimited")


@dataclass(frozen=True, slots=True)
class FrameKind:
    """One kind of fixed-mode frame."""

    header: bytes
    length: int = 0
    length_at: int = -1
    length_size: int = 1
    length_order: Literal["big", "little"] = "big"
    length_adds: int = 0
    checksum: str = ""
    checksum_order: Literal["big", "little"] = "big"
    skip: bool = False
    name: str = ""


@dataclass(frozen=True, slots=True)
class Framing:
    """A profile's `[framing]`."""

    mode: Literal["line", "fixed", "delimited"] = "line"
    terminator: bytes = b"\n"
    max_length: int = 4096
    kinds: tuple[FrameKind, ...] = ()
    start: bytes = b""
    end: bytes = b""
    end_extra: int = 0


@dataclass(frozen=True, slots=True)
class Piece:
    """Something cut from the stream: a frame, a frame to skip, or garbage (with why)."""

    kind: PieceKind
    data: bytes
    note: str = ""


def _bytes(text: str) -> bytes:
    """A profile string as bytes: characters U+0000-U+00FF are the bytes 0x00-0xFF."""
    return text.encode("latin-1")


def parse_framing(table: Mapping[str, Any], where: str, add: Callable[[str, str], None]) -> Framing | None:
    """Read `[framing]`; problems go to `add(key, message)`; None when it is unusable."""
    allowed = {"mode", "terminator", "max_length", "frames", "start", "end", "end_extra"}
    for key in table:
        if key not in allowed:
            add(f"{where}.{key}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    mode = table.get("mode", "line")
    if mode not in _MODES:
        add(f"{where}.mode", f"must be one of {', '.join(_MODES)}, got {mode!r}")
        return None
    max_length = table.get("max_length", 4096)
    if type(max_length) is not int or not 1 <= max_length <= 1 << 20:
        add(f"{where}.max_length", "must be a whole number of bytes, 1 to 1048576")
        return None
    try:
        if mode == "line":
            terminator = _bytes(_text(table, "terminator", "\n"))
            if not terminator:
                raise ValueError("terminator: must not be empty")
            return Framing("line", terminator=terminator, max_length=max_length)
        if mode == "delimited":
            start, end = _bytes(_text(table, "start", "")), _bytes(_text(table, "end", ""))
            if not start or not end:
                raise ValueError("start: delimited framing needs both start and end, e.g. start = '\\u001b@'")
            extra = table.get("end_extra", 0)
            if type(extra) is not int or not 0 <= extra <= 16:
                raise ValueError("end_extra: must be 0 to 16 bytes")
            return Framing("delimited", max_length=max_length, start=start, end=end, end_extra=extra)
        raw = table.get("frames")
        if not isinstance(raw, list) or not raw:
            raise ValueError('frames: fixed framing needs [[framing.frames]] with header = "..." and length')
        kinds = tuple(_kind(item, f"frames[{i}]") for i, item in enumerate(raw))
        return Framing("fixed", max_length=max_length, kinds=kinds)
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        add(f"{where}.{key}", message)
        return None


def _text(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string (use \\u00XX for a byte 0xXX)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{key}: only characters U+0000-U+00FF (one byte each) are allowed") from None
    return value


def _kind(item: Any, where: str) -> FrameKind:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be a table with header and length")
    known = {f for f in FrameKind.__dataclass_fields__}
    for key in item:
        if key not in known:
            raise ValueError(f"{where}.{key}: unknown key; allowed here: {', '.join(sorted(known))}")
    header = _bytes(_text(item, "header", ""))
    if not header:
        raise ValueError(f"{where}.header: required: the bytes every such frame starts with")
    checksum = item.get("checksum", "")
    if checksum and checksum not in checksums.CHECKSUMS:
        raise ValueError(f"{where}.checksum: unknown {checksum!r}; known: {', '.join(checksums.CHECKSUMS)}")
    length, length_at = item.get("length", 0), item.get("length_at", -1)
    for key, value in (("length", length), ("length_at", length_at), ("length_size", item.get("length_size", 1))):
        if type(value) is not int:
            raise ValueError(f"{where}.{key}: must be a whole number")
    if (length > 0) == (length_at >= 0):
        raise ValueError(f"{where}.length: give exactly one of length (fixed size) or length_at (a length field)")
    if length and length < len(header) + (checksums.width(checksum) if checksum else 0):
        raise ValueError(f"{where}.length: {length} is shorter than the header and checksum")
    for key in ("length_order", "checksum_order"):
        if item.get(key, "big") not in ("big", "little"):
            raise ValueError(f"{where}.{key}: must be big or little")
    for key in ("skip",):
        if not isinstance(item.get(key, False), bool):
            raise ValueError(f"{where}.{key}: must be true or false")
    return FrameKind(
        header=header,
        length=length,
        length_at=length_at,
        length_size=item.get("length_size", 1),
        length_order=item.get("length_order", "big"),
        length_adds=item.get("length_adds", 0),
        checksum=checksum,
        checksum_order=item.get("checksum_order", "big"),
        skip=item.get("skip", False),
        name=str(item.get("name", header.decode("latin-1"))),
    )


class Framer:
    """Stateful cutter for one connection: `feed` chunks, `flush` when the connection ends."""

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self._buf = bytearray()
        self._discarding = False  # line mode: inside an over-long line, dropping up to its terminator

    def feed(self, data: bytes) -> list[Piece]:
        """Add bytes; return every frame, skipped frame and garbage run they complete."""
        self._buf += data
        mode = self.framing.mode
        if mode == "line":
            return self._lines()
        if mode == "fixed":
            return self._fixed()
        return self._delimited()

    def flush(self) -> list[Piece]:
        """The connection ended: a partial frame left over is garbage."""
        rest, self._buf = bytes(self._buf), bytearray()
        self._discarding = False
        if self.framing.mode == "line":
            rest = rest.strip(b"\r\n")
        return [Piece("garbage", rest, "partial frame when the connection ended")] if rest else []

    def _lines(self) -> list[Piece]:
        out: list[Piece] = []
        term, limit = self.framing.terminator, self.framing.max_length
        while True:
            at = self._buf.find(term)
            if at < 0:
                if len(self._buf) > limit:
                    out.append(Piece("garbage", bytes(self._buf), f"no {term!r} within {limit} bytes"))
                    self._buf.clear()
                    self._discarding = True
                return out
            line = bytes(self._buf[:at])
            del self._buf[: at + len(term)]
            if self._discarding:
                self._discarding = False
                if line:
                    out.append(Piece("garbage", line, f"rest of a line over {limit} bytes"))
                continue
            line = line.strip(b"\r\n")
            if len(line) > limit:
                out.append(Piece("garbage", line, f"line over {limit} bytes"))
            elif line:
                out.append(Piece("frame", line))

    def _fixed(self) -> list[Piece]:
        out: list[Piece] = []
        kinds = self.framing.kinds
        longest_header = max(len(k.header) for k in kinds)
        while self._buf:
            found = [(self._buf.find(k.header), k) for k in kinds]
            found = [(at, k) for at, k in found if at >= 0]
            if not found:
                keep = longest_header - 1
                if len(self._buf) > keep:
                    cut = len(self._buf) - keep
                    # A trailing partial header is kept; everything before it is garbage.
                    out.append(Piece("garbage", bytes(self._buf[:cut]), "no frame header"))
                    del self._buf[:cut]
                return _merge_garbage(out)
            at, kind = min(found, key=lambda f: f[0])
            if at:
                out.append(Piece("garbage", bytes(self._buf[:at]), "bytes before a frame header"))
                del self._buf[:at]
            size = self._size(kind)
            if size is None:
                return _merge_garbage(out)
            if size <= len(kind.header) or size > self.framing.max_length:
                out.append(Piece("garbage", bytes(self._buf[:1]), f"{kind.name} frame with impossible length {size}"))
                del self._buf[:1]
                continue
            if len(self._buf) < size:
                return _merge_garbage(out)
            frame = bytes(self._buf[:size])
            if kind.checksum and not _checksum_ok(kind, frame):
                out.append(Piece("garbage", frame[:1], f"{kind.name} frame with a bad {kind.checksum}"))
                del self._buf[:1]
                continue
            del self._buf[:size]
            out.append(Piece("skipped" if kind.skip else "frame", frame, kind.name))
        return _merge_garbage(out)

    def _size(self, kind: FrameKind) -> int | None:
        if kind.length:
            return kind.length
        end = kind.length_at + kind.length_size
        if len(self._buf) < end:
            return None
        return int.from_bytes(self._buf[kind.length_at : end], kind.length_order) + kind.length_adds

    def _delimited(self) -> list[Piece]:
        out: list[Piece] = []
        start, end, extra, limit = self.framing.start, self.framing.end, self.framing.end_extra, self.framing.max_length
        while True:
            at = self._buf.find(start)
            if at < 0:
                keep = len(start) - 1
                if len(self._buf) > keep:
                    del self._buf[: len(self._buf) - keep]
                return out
            if at:
                del self._buf[:at]
            stop = self._buf.find(end, len(start))
            if stop < 0 or len(self._buf) < stop + len(end) + extra:
                if len(self._buf) > limit:
                    out.append(Piece("garbage", bytes(self._buf), f"no end marker within {limit} bytes"))
                    nxt = self._buf.find(start, len(start))
                    del self._buf[: nxt if nxt > 0 else len(self._buf)]
                    continue
                return out
            size = stop + len(end) + extra
            frame = bytes(self._buf[:size])
            del self._buf[:size]
            if size > limit:
                out.append(Piece("garbage", frame, f"frame over {limit} bytes"))
            else:
                out.append(Piece("frame", frame))


def _checksum_ok(kind: FrameKind, frame: bytes) -> bool:
    size = checksums.width(kind.checksum)
    carried = int.from_bytes(frame[-size:], kind.checksum_order)
    return checksums.compute(kind.checksum, frame[:-size]) == carried


def _merge_garbage(pieces: list[Piece]) -> list[Piece]:
    """Adjacent garbage runs as one piece (one resync is one event, however many bytes it skipped)."""
    out: list[Piece] = []
    for piece in pieces:
        if out and piece.kind == "garbage" and out[-1].kind == "garbage":
            out[-1] = Piece("garbage", out[-1].data + piece.data, out[-1].note)
        else:
            out.append(piece)
    return out
