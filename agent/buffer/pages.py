"""Reading what survives in a damaged buffer file, page by page, without trusting its structure.

`sqlite3`'s own `.recover` does this for any schema; this module does it for the buffer's
tables only, in pure Python, because:

- a gateway often has the SQLite library but not the `sqlite3` command-line tool;
- `.recover` also resurrects rows from the file's free pages by default, and in our buffer
  those are records the collector already acknowledged (deleted by `ack`): re-sending them
  would count people twice. Here free pages are skipped (when the free-list can be read), and
  the caller drops every record at or below the highest acknowledged seq it knows;
- our rows are easy to recognise without the schema: a record's body is a packed protocol
  record whose own `seq` equals the row's key, so a row from a damaged page is either
  provably one of ours or ignored.

How it reads (https://www.sqlite.org/fileformat2.html): the page size comes from the file
header, or the WAL header when the first page is gone. The `-wal` file's committed frames
(salts and checksums verified, up to the last commit frame) replace the main file's pages,
since a killed agent's latest commits live there. Then every page that is a b-tree *leaf*
(table or index) is decoded cell by cell, following overflow chains; interior pages are not
needed, so a damaged interior page loses nothing below it. A page or cell that does not
parse is counted and skipped; nothing here raises on bad bytes.

What the shapes are (schema.py):
  records  (seq rowid, taken_ms int, kind text, body blob)
  pending  (id rowid, boot text, offset_ms int, taken_ms int, body blob)
  meta     (key text, value int)        a table leaf row with two columns
  state    (key text, value text JSON)
  seen     (scope text, key text, expires_ms int)  an index leaf (WITHOUT ROWID)
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from footfall.agent.buffer.ledger import KEYS as LEDGER_KEYS
from footfall.protocol.envelope import unpack_record
from footfall.protocol.errors import ProtocolError

HEADER_MAGIC = b"SQLite format 3\x00"
_WAL_MAGICS = (0x377F0682, 0x377F0683)
_TABLE_LEAF = 0x0D
_INDEX_LEAF = 0x0A
# The meta keys the buffer keeps (a two-column text/int row with another key is not ours).
META_KEYS = frozenset(LEDGER_KEYS)
_RECORD_KINDS = frozenset({"count", "occupancy", "transaction", "event", "gap"})


@dataclass(slots=True)
class Found:
    """Everything a scan recognised, with how much of the file it could read."""

    records: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq -> (taken_ms, body)
    pending: dict[int, tuple[str, int, int, bytes]] = field(default_factory=dict)  # id -> (boot, offset, taken, body)
    meta: dict[str, int] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    page_size: int = 0
    pages: int = 0
    leaf_pages: int = 0
    bad_pages: int = 0
    bad_cells: int = 0
    free_pages: int = 0
    wal_frames: int = 0
    header_ok: bool = False

    @property
    def max_seq(self) -> int:
        """The highest record seq seen (0 when none)."""
        return max(self.records, default=0)


def scan(path: Path) -> Found:
    """Read every recognisable row of the buffer file at `path` (and its `-wal`), however damaged."""
    path = Path(path)
    found = Found()
    main = path.read_bytes() if path.exists() else b""
    wal_path = path.with_name(path.name + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    found.header_ok = main[:16] == HEADER_MAGIC
    page_size, reserved = _page_geometry(main, wal)
    found.page_size = page_size
    frames = _wal_pages(wal, page_size)
    found.wal_frames = len(frames)

    def page(number: int) -> bytes | None:
        if number in frames:
            return frames[number]
        start = (number - 1) * page_size
        data = main[start : start + page_size]
        return data if len(data) == page_size else None

    count = max(len(main) // page_size, max(frames, default=0))
    found.pages = count
    free = _free_pages(page, count)
    found.free_pages = len(free)
    usable = page_size - reserved
    for number in range(1, count + 1):
        if number in free:
            continue
        data = page(number)
        if data is None:
            continue
        offset = 100 if number == 1 else 0
        kind = data[offset] if len(data) > offset else 0
        if kind not in (_TABLE_LEAF, _INDEX_LEAF):
            continue
        try:
            cells = list(_leaf_cells(data, offset, kind, usable, page, count))
        except (IndexError, ValueError, struct.error):
            found.bad_pages += 1
            continue
        found.leaf_pages += 1
        for cell in cells:
            if cell is None:
                found.bad_cells += 1
                continue
            rowid, values = cell
            _classify(found, kind, rowid, values)
    return found


def _page_geometry(main: bytes, wal: bytes) -> tuple[int, int]:
    """(page size, reserved bytes per page), from the file header, else the WAL header, else SQLite's default."""
    if main[:16] == HEADER_MAGIC and len(main) >= 100:
        raw = struct.unpack(">H", main[16:18])[0]
        size = 65536 if raw == 1 else raw
        if _valid_page_size(size):
            return size, main[20]
    if len(wal) >= 32 and struct.unpack(">I", wal[:4])[0] in _WAL_MAGICS:
        size = struct.unpack(">I", wal[8:12])[0]
        if _valid_page_size(size):
            return size, 0
    return 4096, 0


def _valid_page_size(size: int) -> bool:
    return 512 <= size <= 65536 and size & (size - 1) == 0


def _wal_pages(wal: bytes, page_size: int) -> dict[int, bytes]:
    """Page number -> its newest content among the WAL's committed, checksum-valid frames."""
    if len(wal) < 32:
        return {}
    magic, _version, wal_page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", wal[:32])
    if magic not in _WAL_MAGICS or wal_page_size != page_size:
        return {}
    big_endian = magic & 1 == 1
    s0, s1 = _checksum(wal[:24], 0, 0, big_endian)
    if (s0, s1) != (c1, c2):
        return {}
    committed: dict[int, bytes] = {}
    uncommitted: dict[int, bytes] = {}
    pos = 32
    frame_size = 24 + page_size
    while pos + frame_size <= len(wal):
        number, commit, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(">6I", wal[pos : pos + 24])
        if (f_salt1, f_salt2) != (salt1, salt2):
            break
        data = wal[pos + 24 : pos + frame_size]
        s0, s1 = _checksum(wal[pos : pos + 8], s0, s1, big_endian)
        s0, s1 = _checksum(data, s0, s1, big_endian)
        if (s0, s1) != (f_c1, f_c2):
            break
        uncommitted[number] = data
        if commit:
            committed.update(uncommitted)
            uncommitted.clear()
        pos += frame_size
    return committed


def _checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """The WAL's running checksum (fileformat2.html, "Checksum Algorithm")."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data[: len(data) // 4 * 4])
    for i in range(0, len(words) - 1, 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _free_pages(page: Any, count: int) -> set[int]:
    """The free-list's pages (trunks and leaves), as far as it can be followed; empty if page 1 is gone."""
    first = page(1)
    if first is None or first[:16] != HEADER_MAGIC:
        return set()
    trunk = struct.unpack(">I", first[32:36])[0]
    free: set[int] = set()
    while 1 <= trunk <= count and trunk not in free:
        free.add(trunk)
        data = page(trunk)
        if data is None:
            break
        following, leaves = struct.unpack(">II", data[:8])
        for i in range(min(leaves, (len(data) - 8) // 4)):
            leaf = struct.unpack(">I", data[8 + 4 * i : 12 + 4 * i])[0]
            if 1 <= leaf <= count:
                free.add(leaf)
        trunk = following
    return free


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """SQLite's big-endian varint at `pos`: (value, next position)."""
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | data[pos + 8], pos + 9


def _leaf_cells(
    data: bytes, offset: int, kind: int, usable: int, page: Any, count: int
) -> Iterator[tuple[int, list[Any]] | None]:
    """Each cell of a leaf page as (rowid, column values), or None for a cell that does not parse."""
    cells = struct.unpack(">H", data[offset + 3 : offset + 5])[0]
    pointers = offset + 8
    if pointers + 2 * cells > usable:
        raise ValueError("cell pointer array runs off the page")
    for i in range(cells):
        cell = struct.unpack(">H", data[pointers + 2 * i : pointers + 2 * i + 2])[0]
        try:
            yield _cell(data, cell, kind, usable, page, count)
        except (IndexError, ValueError, struct.error, UnicodeDecodeError):
            yield None


def _cell(data: bytes, pos: int, kind: int, usable: int, page: Any, count: int) -> tuple[int, list[Any]]:
    if not 0 < pos < usable:
        raise ValueError("cell outside the page")
    size, pos = _varint(data, pos)
    rowid = 0
    if kind == _TABLE_LEAF:
        rowid, pos = _varint(data, pos)
        rowid = rowid - (1 << 64) if rowid >= 1 << 63 else rowid
    most = usable - 35 if kind == _TABLE_LEAF else (usable - 12) * 64 // 255 - 23
    if size <= most:
        payload = data[pos : pos + size]
    else:
        least = (usable - 12) * 32 // 255 - 23
        local = least + (size - least) % (usable - 4)
        if local > most:
            local = least
        payload = data[pos : pos + local] + _overflow(data, pos + local, size - local, usable, page, count)
    if len(payload) != size:
        raise ValueError("payload cut short")
    return rowid, _record(payload)


def _overflow(data: bytes, pos: int, remaining: int, usable: int, page: Any, count: int) -> bytes:
    number = struct.unpack(">I", data[pos : pos + 4])[0]
    out = bytearray()
    visited: set[int] = set()
    while remaining > 0:
        if not 1 <= number <= count or number in visited:
            raise ValueError("broken overflow chain")
        visited.add(number)
        chunk = page(number)
        if chunk is None:
            raise ValueError("overflow page missing")
        take = min(remaining, usable - 4)
        out += chunk[4 : 4 + take]
        remaining -= take
        number = struct.unpack(">I", chunk[:4])[0]
    return bytes(out)


def _record(payload: bytes) -> list[Any]:
    """A record's column values (https://www.sqlite.org/fileformat2.html#record_format)."""
    header_size, pos = _varint(payload, 0)
    if not 1 <= header_size <= len(payload):
        raise ValueError("bad record header")
    types: list[int] = []
    while pos < header_size:
        serial, pos = _varint(payload, pos)
        types.append(serial)
    body = header_size
    values: list[Any] = []
    for serial in types:
        if serial == 0:
            values.append(None)
        elif serial in (1, 2, 3, 4, 5, 6):
            width = (0, 1, 2, 3, 4, 6, 8)[serial]
            values.append(int.from_bytes(payload[body : body + width], "big", signed=True))
            body += width
        elif serial == 7:
            values.append(struct.unpack(">d", payload[body : body + 8])[0])
            body += 8
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial >= 12:
            length = (serial - 12) // 2
            raw = payload[body : body + length]
            values.append(raw if serial % 2 == 0 else raw.decode("utf-8"))
            body += length
        else:
            raise ValueError("reserved serial type")
    if body > len(payload):
        raise ValueError("record runs past its payload")
    return values


def _classify(found: Found, kind: int, rowid: int, values: list[Any]) -> None:
    """File a decoded row under the buffer table whose shape it has; ignore anything else."""
    shape = tuple(type(v).__name__ for v in values)
    if kind == _INDEX_LEAF:
        if shape == ("str", "str", "int"):
            found.seen.add((values[0], values[1], values[2]))
        return
    if shape == ("NoneType", "int", "str", "bytes") and values[2] in _RECORD_KINDS and rowid >= 1:
        if rowid not in found.records and _is_record(values[3], rowid):
            found.records[rowid] = (values[1], values[3])
    elif shape == ("NoneType", "str", "int", "int", "bytes"):
        found.pending.setdefault(rowid, (values[1], values[2], values[3], values[4]))
    elif shape == ("str", "int") and values[0] in META_KEYS:
        # The marks read from here (next_seq, acked_seq, wall_high_ms and the counters) only ever grow,
        # so the largest of the versions found is the latest.
        found.meta[values[0]] = max(found.meta.get(values[0], values[1]), values[1])
    elif shape == ("str", "str"):
        try:
            value = json.loads(values[1])
        except ValueError:
            return
        if isinstance(value, dict):
            _keep_latest_state(found.state, values[0], value)


def _is_record(body: bytes, rowid: int) -> bool:
    try:
        return unpack_record(body).seq == rowid
    except (ProtocolError, ValueError, TypeError):
        return False


def _keep_latest_state(state: dict[str, dict[str, Any]], key: str, value: dict[str, Any]) -> None:
    """Of two versions of one state row, keep the later reading (counter state only moves forward)."""
    old = state.get(key)
    if old is None or _state_time(value) > _state_time(old):
        state[key] = value


def _state_time(value: dict[str, Any]) -> int:
    at = value.get("at_ms", 0)
    return at if isinstance(at, int) else 0
