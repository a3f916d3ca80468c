"""The buffer's seq marks, kept beside the database so that losing the database never reuses a seq.

`buffer.sqlite.marks` holds three numbers: `reserved` (every seq ever given is below it),
`acked` (the collector acknowledged every seq up to it) and `wall_high_ms` (the latest
trusted wall-clock time of a commit). When the database is unreadable (a power cut on a
bad SD card) the fresh one starts at `reserved`, and the lost range starts after `acked`.

Cost on flash, which is the point of this design:
- `reserved` is a reservation, not a copy of `next_seq`: the buffer writes it (with an
  fdatasync) only when its seqs reach it, and then reserves about a minute's worth ahead
  (at least `MIN_BLOCK`), so at store load it is written a few times a day, and under a
  flood about once a minute, never once per commit. It is written *before* the commit that
  uses a seq at or past the old value, so it is always above every committed seq.
- `acked` and `wall_high_ms` are written at most once a minute and without fdatasync. After a
  power cut they may be a minute old: a lost range then starts a little early (it over-reports,
  never under-reports), and `salvage` also reads the acked mark from the damaged file itself.

The file is two fixed slots written alternately, each with a generation and a CRC32, so a
write torn by a power cut leaves the other slot intact. The agent holds an exclusive
`flock` on it while it runs: a second agent, or `salvage`, on the same state directory is
refused instead of corrupting the seq numbering.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from footfall.agent.private_file import fsync_dir

SLOT = 256
MIN_BLOCK = 1000
MAX_BLOCK = 1_000_000
# Reserve roughly this many seconds of seqs at the current rate.
RESERVE_AHEAD_S = 60.0
LAZY_EVERY_S = 60.0


def marks_path(buffer_path: Path) -> Path:
    """The marks file of the buffer at `buffer_path`."""
    return Path(buffer_path).with_name(Path(buffer_path).name + ".marks")


class MarksLocked(Exception):
    """Another process (a running agent, or salvage) holds the buffer."""


@dataclass(slots=True)
class MarkValues:
    """What the file says."""

    reserved: int = 0
    acked: int = 0
    wall_high_ms: int = 0
    gen: int = 0


class Marks:
    """The open marks file; `Marks.open(path)`, then `reserve` / `note` / `close`."""

    def __init__(
        self, path: Path, fd: int, values: MarkValues | None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._fd = fd
        self.existed = values is not None
        self.values = values or MarkValues()
        self._monotonic = monotonic
        self._reserved_at = monotonic()
        self._reserved_from = self.values.reserved
        # When the marks were last written lazily; None: not yet, so the first `note` writes at once
        # (0.0 would hold it back for the first minute after boot: monotonic time starts there).
        self._lazy_at: float | None = None
        self._dirty = False

    @classmethod
    def open(cls, path: Path, *, monotonic: Callable[[], float] = time.monotonic) -> Marks:
        """Open (or create) and lock the marks file; MarksLocked if another process holds it."""
        path = Path(path)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MarksLocked(f"{path} is locked by another process (a running agent?)") from None
            raise
        if created:
            fsync_dir(path.parent)
        return cls(path, fd, _read(fd), monotonic)

    def close(self) -> None:
        """Write what is pending durably and release the lock."""
        if self._fd < 0:
            return
        if self._dirty:
            self._write(durable=True)
        os.close(self._fd)
        self._fd = -1

    def ensure_reserved(self, next_seq: int) -> bool:
        """Make `reserved` exceed `next_seq` (fdatasync'd) if it does not already; True if it wrote."""
        if next_seq < self.values.reserved:
            return False
        now = self._monotonic()
        used = max(0, next_seq - self._reserved_from)
        elapsed = max(now - self._reserved_at, 1e-3)
        block = int(min(MAX_BLOCK, max(MIN_BLOCK, used / elapsed * RESERVE_AHEAD_S)))
        self.values.reserved = next_seq + block
        self._reserved_at = now
        self._reserved_from = next_seq
        self._write(durable=True)
        return True

    def note(self, *, acked: int | None = None, wall_high_ms: int | None = None, force: bool = False) -> None:
        """Record the acked mark and trusted wall time; written lazily (at most once a minute, no fsync)."""
        if acked is not None and acked > self.values.acked:
            self.values.acked = acked
            self._dirty = True
        if wall_high_ms is not None and wall_high_ms > self.values.wall_high_ms:
            self.values.wall_high_ms = wall_high_ms
            self._dirty = True
        now = self._monotonic()
        if self._dirty and (force or self._lazy_at is None or now - self._lazy_at >= LAZY_EVERY_S):
            self._lazy_at = now
            self._write(durable=force)

    def _write(self, *, durable: bool) -> None:
        self.values.gen += 1
        data = _encode(self.values)
        os.pwrite(self._fd, data, (self.values.gen % 2) * SLOT)
        if durable:
            os.fdatasync(self._fd)
        self._dirty = False


def read_marks(path: Path) -> MarkValues | None:
    """The marks in the file at `path` without locking it; None if absent or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        # Absent, or its folder unusable: opening the buffer next says what is wrong.
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _encode(values: MarkValues) -> bytes:
    text = json.dumps(
        {"gen": values.gen, "reserved": values.reserved, "acked": values.acked, "wall_high_ms": values.wall_high_ms},
        sort_keys=True,
    ).encode()
    body = text.ljust(SLOT - 9)
    return body + f"{zlib.crc32(body):08x}".encode() + b"\n"


def _read(fd: int) -> MarkValues | None:
    best: MarkValues | None = None
    for slot in range(2):
        data = os.pread(fd, SLOT, slot * SLOT)
        if len(data) != SLOT or data[-1:] != b"\n":
            continue
        body, crc = data[: SLOT - 9], data[SLOT - 9 : SLOT - 1]
        if crc != f"{zlib.crc32(body):08x}".encode():
            continue
        try:
            raw = json.loads(body)
            values = MarkValues(
                int(raw["reserved"]), int(raw["acked"]), int(raw["wall_high_ms"]), int(raw["gen"])
            )
        except (ValueError, KeyError, TypeError):
            continue
        if best is None or values.gen > best.gen:
            best = values
    return best

