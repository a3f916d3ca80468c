"""CSV drop folder: files a legacy system writes into a folder; each file is one frame, taken exactly once.

The rule for a half-written file: a file is read only once its size and modification time
have not changed for `settle` seconds (checked on successive listings), so a writer that is
still appending is never read. A writer that can write elsewhere and rename into the folder
(`file.tmp` -> `file.csv`, atomic on one filesystem) is safe at once: only names matching
`pattern` are looked at; give such writers `settle = 0`.

Exactly once: the file's key (name, size, mtime and SHA-256 of its bytes) is committed in the
same buffer transaction as its records (`SourceIntake(frame, once=key)`); only then is the file
moved to `done_dir`. A crash between the commit and the move leaves the file in place: on
restart its key is found, nothing is written again, and the file is moved.

Refused files go to `failed_dir` with a `<name>.reason` beside them (and an error log line, and
the source's last error in status), so they are neither retried for ever nor in the way of the
files after them: a file the adapter refuses; a file whose name is not UTF-8 (its readings would
carry a name no record or log can hold: rename it); a file over `max_file_size`, refused from its
size without being read; a file with a line over `max_line`, refused as soon as the line passes
the bound. Files are read in chunks, hashed as they come, so memory stays bounded by
`max_file_size` whatever lands in the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from footfall.agent.config.transports import CsvDirOptions
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, FrameRefused, Intake, NotStored, SourceError, now_ms
from footfall.agent.sources.device import Device, DeviceTransport, options_of

from footfall.logs import event
from footfall.units import format_size

log = logging.getLogger("footfall.agent.sources.csv_dir")
_SEP = "\x1f"
# Files are read this much at a time, so a line over the bound is refused after little more than it.
CHUNK = 64 * 1024
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
REASON_SUFFIX = ".reason"


class FileRefused(Exception):
    """A file this source will not take, whatever its content: the message says why and what to change."""


@dataclass(frozen=True, slots=True)
class Seen:
    """A file's size and mtime at one listing, and since when (monotonic) they have not changed."""

    size: int
    mtime_ns: int
    since: float


@dataclass(slots=True, eq=False)
class Folder(Device[CsvDirOptions]):
    """One csv_dir source."""

    seen: dict[str, Seen] = field(default_factory=dict)

    @property
    def what(self) -> str:
        """The folder it watches."""
        return f"folder {self.options.path}"


@dataclass(frozen=True, slots=True)
class Read:
    """A file read whole, within the bounds: its bytes, its stat as opened, and its SHA-256."""

    data: bytes
    stat: os.stat_result
    sha256: str


def file_key(name: str, read: Read) -> str:
    """What identifies one taken file: name, size, mtime and the hash of its bytes."""
    return _SEP.join((name, str(read.stat.st_size), str(read.stat.st_mtime_ns), read.sha256))


def printable(name: str) -> str:
    """A file name fit for logs and status: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_name(name: str) -> None:
    """FileRefused when the name is not UTF-8 (Python keeps such bytes as surrogates, which nothing else takes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise FileRefused(
            f"the file name {printable(name)!r} is not UTF-8 (an exporter writing another code page?); "
            "rename it with UTF-8 characters only and put it back in the folder"
        ) from None


def _list(folder: Path, pattern: str) -> list[tuple[Path, os.stat_result]]:
    """The folder's regular files matching `pattern`, by name, with their stat."""
    out = []
    for path in sorted(folder.glob(pattern)):
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            if path.is_file():
                out.append((path, stat))
    return out


def read_bounded(path: Path, max_file_size: int, max_line: int) -> Read | None:
    """The file, read in chunks and hashed as they come; None when it changed while being read.

    FileRefused, with nothing more read, when the file is over `max_file_size` (known from its
    size, before reading) or a line of it is over `max_line`: memory stays within the bound.
    """
    with path.open("rb") as f:
        stat = os.fstat(f.fileno())
        if stat.st_size > max_file_size:
            raise FileRefused(
                f"the file is {format_size(stat.st_size)}, over this source's max_file_size "
                f"({format_size(max_file_size)}); split the export, or raise max_file_size for this source "
                "(decoding takes about 40 times the file's size in memory)"
            )
        chunks: list[bytes] = []
        digest = hashlib.sha256()
        size = 0
        line = 0
        # One byte past the bound at most: enough to see that the file grew past it.
        while chunk := f.read(min(CHUNK, max_file_size + 1 - size)):
            size += len(chunk)
            if size > max_file_size:
                return None  # growing: still being written; once settled its size refuses it
            line = _open_line(chunk, line, max_line)
            digest.update(chunk)
            chunks.append(chunk)
    if size != stat.st_size:
        return None
    return Read(b"".join(chunks), stat, digest.hexdigest())


def _open_line(chunk: bytes, carried: int, max_line: int) -> int:
    """The length of the line left open after `chunk` (`carried` bytes came before); FileRefused over `max_line`."""
    parts = _LINE_BREAK.split(chunk)
    longest = carried + len(parts[0])
    if len(parts) > 1:
        longest = max(longest, *map(len, parts[1:]))
        carried = len(parts[-1])
    else:
        carried = longest
    if longest > max_line:
        raise FileRefused(
            f"a line is longer than this source's max_line ({format_size(max_line)}): not the CSV export this "
            "source expects (a binary file, or rows without line breaks?); raise max_line for this source if "
            "its lines really are that long"
        )
    return carried


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` (made if needed), never overwriting: a clash gets a numbered name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    number = 1
    while target.exists():
        target = folder / f"{path.stem}.{number}{path.suffix}"
        number += 1
    os.replace(path, target)
    return target


class CsvDirSource(DeviceTransport[Folder]):
    """Every csv_dir source, one task each; a folder that does not exist yet is waited for."""

    kind = "csv-dir"
    logger = log

    def device(self, intake: Intake) -> Folder:
        """A folder for each source."""
        options = options_of(intake, CsvDirOptions, "csv_dir")
        return Folder(intake, options, Backoff.of(options))

    async def session(self, folder: Folder) -> None:
        """Scan the folder on the interval until it goes away."""
        options = folder.options
        while True:
            if not await asyncio.to_thread(options.path.is_dir):
                raise SourceError(f"folder {options.path} does not exist (or is not a folder)")
            folder.intake.health.up()
            await self.scan(folder)
            await asyncio.sleep(options.scan_interval)

    async def scan(self, folder: Folder) -> int:
        """List the folder once; take every file that has settled. Returns how many were taken."""
        options = folder.options
        loop = asyncio.get_running_loop()
        now = loop.time()
        taken = 0
        present: set[str] = set()
        for path, stat in await asyncio.to_thread(_list, options.path, options.pattern):
            present.add(path.name)
            before = folder.seen.get(path.name)
            if before is None or (before.size, before.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                folder.seen[path.name] = Seen(stat.st_size, stat.st_mtime_ns, now)
                if options.settle > 0:
                    continue
            elif now - before.since < options.settle:
                continue
            if await self._take(folder, path):
                taken += 1
                folder.seen.pop(path.name, None)
        for gone in set(folder.seen) - present:
            del folder.seen[gone]
        return taken

    async def _take(self, folder: Folder, path: Path) -> bool:
        intake, options, name = folder.intake, folder.options, folder.name
        try:
            check_name(path.name)
            read = await asyncio.to_thread(read_bounded, path, options.max_file_size, options.max_line)
        except FileNotFoundError:
            return False
        except FileRefused as exc:
            intake.health.failed(now_ms(), "receiving", f"{printable(path.name)}: {exc}")
            await self._refuse(folder, path, str(exc))
            return False
        if read is None:
            return False  # still changing under us: wait for it to settle again
        frame = Frame(name, read.data, received_ms=now_ms(), meta={"file": path.name})
        try:
            result = await intake(frame, once=file_key(path.name, read))
        except FrameRefused as exc:
            intake.health.garbage += 1
            await self._refuse(folder, path, str(exc))
            return False
        except NotStored:
            return False  # not stored: the file stays and is tried again next scan
        moved = await asyncio.to_thread(_move, path, options.path / options.done_dir)
        event(
            log,
            "csv_file_taken",
            source=name,
            file=path.name,
            records=result.records,
            duplicates=result.duplicates,
            moved_to=str(moved),
        )
        return True

    async def _refuse(self, folder: Folder, path: Path, reason: str) -> None:
        """Move a refused file to `failed_dir` with its reason beside it, and say so."""
        moved = await asyncio.to_thread(_move, path, folder.options.path / folder.options.failed_dir)
        note = moved.with_name(moved.name + REASON_SUFFIX)
        try:
            await asyncio.to_thread(note.write_text, reason + "\n", encoding="utf-8")
        except OSError as exc:  # the file is set aside all the same; the log line keeps the reason
            event(log, "csv_reason_not_written", logging.WARNING, path=printable(str(note)), error=str(exc))
        event(
            log,
            "csv_file_refused",
            logging.ERROR,
            source=folder.name,
            file=printable(path.name),
            moved_to=printable(str(moved)),
            reason=reason,
        )
