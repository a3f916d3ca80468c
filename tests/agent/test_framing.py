"""The framer cuts any chunking of a byte stream the same way, and resynchronises after garbage."""

from __future__ import annotations

from footfall.agent.decode.checksums import compute
from footfall.agent.decode.framing import FrameKind, Framer, Framing, parse_framing
from footfall.agent.decode.profile_load import load_profiles
from hypothesis import given
from hypothesis import strategies as st


def _pc(entries: int, exits: int) -> bytes:
    body = b"PC" + bytes(4) + entries.to_bytes(2, "big") + exits.to_bytes(2, "big")
    return body + bytes([compute("crc8", body)])


def _dd(d1: int, d2: int) -> bytes:
    body = b"DD" + d1.to_bytes(2, "big") + d2.to_bytes(2, "big")
    return body + bytes([compute("crc8", body)])


TERABEE = load_profiles()["terabee-evo"].framing


def _cut(framing: Framing, stream: bytes, cuts: list[int]) -> tuple[list[bytes], int, int]:
    framer = Framer(framing)
    pieces = []
    last = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        pieces += framer.feed(stream[last:cut])
        last = cut
    pieces += framer.flush()
    frames = [p.data for p in pieces if p.kind == "frame"]
    garbage = sum(len(p.data) for p in pieces if p.kind == "garbage")
    skipped = sum(1 for p in pieces if p.kind == "skipped")
    return frames, garbage, skipped


@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    assert TERABEE is not None
    noise = b"\x00\xffPC\x01garbage"  # contains a false header
    stream = noise + _pc(10, 4) + _dd(700, 800) + _pc(11, 4) + b"\x13" + _pc(11, 5)
    frames, garbage, skipped = _cut(TERABEE, stream, cuts)
    assert frames == [_pc(10, 4), _pc(11, 4), _pc(11, 5)]
    assert garbage == len(noise) + 1
    assert skipped == 1


def test_a_frame_inside_a_bad_one_is_found() -> None:
    assert TERABEE is not None
    good = _pc(300, 299)
    bad = bytearray(_pc(5, 5))
    bad[-1] ^= 1
    # The bad frame's tail overlaps the start of a good one: resync one byte at a time finds it.
    stream = bytes(bad[:6]) + good
    frames, garbage, _ = _cut(TERABEE, stream, [])
    assert frames == [good]
    assert garbage == 6


def test_lines_long_lines_and_crlf() -> None:
    framing = Framing("line", terminator=b"\r", max_length=8)
    framer = Framer(framing)
    pieces = framer.feed(b"ABC\r\nDEF\r0123456789ABCDEF\rGHI\r\r")
    assert [(p.kind, p.data) for p in pieces] == [
        ("frame", b"ABC"),
        ("frame", b"DEF"),
        ("garbage", b"0123456789ABCDEF"),
        ("frame", b"GHI"),
    ]
    # An unterminated flood is garbage once it passes max_length, up to the next terminator.
    pieces = framer.feed(b"X" * 20) + framer.feed(b"YY\rOK\r")
    assert [p.kind for p in pieces] == ["garbage", "garbage", "frame"]
    assert pieces[-1].data == b"OK"


def test_delimited_receipts() -> None:
    framing = Framing("delimited", start=b"\x1b@", end=b"\x1dV", end_extra=1, max_length=64)
    framer = Framer(framing)
    receipt = b"\x1b@TOTAL 1.00\n\x1dV\x00"
    pieces = framer.feed(b"\x10\x04\x01" + receipt[:5]) + framer.feed(receipt[5:] + b"\x1b@" + b"x" * 70)
    assert [(p.kind, p.data) for p in pieces] == [("frame", receipt), ("garbage", b"\x1b@" + b"x" * 70)]


def test_length_field_frames() -> None:
    kind = FrameKind(header=b"\xaa\x55", length_at=2, length_size=1, length_adds=4, checksum="sum8", name="var")
    framer = Framer(Framing("fixed", kinds=(kind,), max_length=64))
    body = b"\xaa\x55\x03" + b"xyz"
    frame = body + bytes([sum(body) & 0xFF])
    assert [p.data for p in framer.feed(b"zz" + frame + frame[:3]) if p.kind == "frame"] == [frame]
    assert [p.data for p in framer.feed(frame[3:]) if p.kind == "frame"] == [frame]


def test_framing_section_problems_name_their_key() -> None:
    problems: list[str] = []

    def add(key: str, message: str) -> None:
        problems.append(f"{key}: {message}")

    assert parse_framing({"mode": "fixed"}, "framing", add) is None
    assert (
        parse_framing({"mode": "fixed", "frames": [{"header": "PC", "length": 11, "checksum": "crc9"}]}, "framing", add)
        is None
    )
    assert parse_framing({"mode": "wavy"}, "framing", add) is None
    assert parse_framing({"mode": "line", "colour": 1}, "framing", add) is not None
    assert problems[0].startswith("framing.frames: fixed framing needs")
    assert problems[1].startswith("framing.frames[0].checksum: unknown 'crc9'")
    assert problems[2].startswith("framing.mode: must be one of")
    assert problems[3].startswith("framing.colour: unknown key")
