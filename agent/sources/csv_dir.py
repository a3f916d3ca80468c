"""CSV drop folder: files a legacy system writes into a folder; each file is one frame, taken exactly once.

The rule for a half-written file: a file is read only once its size and modification time
have not changed for `settle` seconds (checked on successive listings), so a writer that is
still appending is never read. A writer that can write elsewhere and rename into the folder
(`file.tmp` -> `file.csv`, atomic on one filesystem) is safe at once: only names matching
`pattern` are looked at; give such writers `settle = 0`.

Exactly once: the file's key (name, size, mtime and SHA-256 of its bytes) is committed in the
same buffer transaction as its records (`SourceIntake(frame, once=key)`); only then is the file
moved to `done_dir`. A crash between the commit and the move leaves the file in place: on
restart its key is found, nothing is written again, and the file is moved. A file the adapter
refuses goes to `failed_dir` (logged with the reason), so it is not retried for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from footfall.agent.buffer import BufferError
from footfall.agent.config import AgentConfig, CsvDirOptions
from footfall.agent.decode.extract import DecodeError
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, SourceError
from footfall.agent.sources.supervise import Backoff, keep_running, now_ms, stop_tasks

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.csv_dir")
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Seen:
    """A file's size and mtime at one listing, and since when (monotonic) they have not changed."""

    size: int
    mtime_ns: int
    since: float


@dataclass(slots=True)
class Folder:
    """One csv_dir source."""

    intake: SourceIntake
    options: CsvDirOptions
    backoff: Backoff
    seen: dict[str, Seen] = field(default_factory=dict)
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def file_key(name: str, data: bytes, stat: os.stat_result) -> str:
    """What identifies one taken file: name, size, mtime and the hash of its bytes."""
    return _SEP.join((name, str(stat.st_size), str(stat.st_mtime_ns), hashlib.sha256(data).hexdigest()))


def _list(folder: Path, pattern: str) -> list[tuple[Path, os.stat_result]]:
    """The folder's regular files matching `pattern`, by name, with their stat."""
    out = []
    for path in sorted(folder.glob(pattern)):
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            if path.is_file():
                out.append((path, stat))
    return out


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    data = path.read_bytes()
    return data, path.stat()


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


class CsvDirSource:
    """Every csv_dir source, one task each."""

    def __init__(self, intakes: Sequence[SourceIntake]) -> None:
        self.folders: list[Folder] = []
        for intake in intakes:
            options = intake.source.options
            if not isinstance(options, CsvDirOptions):
                raise TypeError(f"source {intake.source.name!r} is not a csv_dir source")
            self.folders.append(Folder(intake, options, Backoff.of(options)))

    @classmethod
    def from_config(cls, config: AgentConfig, intakes: Sequence[SourceIntake]) -> CsvDirSource:
        """The csv_dir transport for these sources."""
        return cls(intakes)

    async def start(self) -> None:
        """One task per folder; a folder that does not exist yet is waited for."""
        for folder in self.folders:
            name = folder.intake.source.name
            folder.task = asyncio.create_task(
                keep_running(
                    name,
                    functools.partial(self._session, folder),
                    [folder.intake.health],
                    folder.backoff,
                    what=f"folder {folder.options.path}",
                ),
                name=f"footfall-csv-dir:{name}",
            )

    async def stop(self) -> None:
        """Stop watching; a file being committed finishes first."""
        tasks = [f.task for f in self.folders if f.task is not None]
        await stop_tasks(tasks)
        for folder in self.folders:
            folder.task = None

    async def _session(self, folder: Folder) -> None:
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
        intake, options = folder.intake, folder.options
        name = intake.source.name
        try:
            data, stat = await asyncio.to_thread(_read, path)
        except FileNotFoundError:
            return False
        if len(data) != stat.st_size:
            return False  # still changing under us: wait for it to settle again
        frame = Frame(name, data, received_ms=now_ms(), meta={"file": path.name})
        try:
            result = await intake(frame, once=file_key(path.name, data, stat))
        except DecodeError as exc:
            intake.health.garbage += 1
            moved = await asyncio.to_thread(_move, path, options.path / options.failed_dir)
            event(
                log,
                "csv_file_refused",
                logging.ERROR,
                source=name,
                file=path.name,
                moved_to=str(moved),
                reason=str(exc),
            )
            return False
        except BufferError:
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
