"""`footfall agent buffer salvage FILE`: put back what a damaged, quarantined buffer file still holds.

When the agent finds its buffer damaged it moves the file aside (`buffer.sqlite.corrupt-<time>`)
and starts a fresh one above every seq it ever used, with a `gap` event naming the seqs that
were buffered but not yet acknowledged (agent/buffer/, guarantee 7). This tool reads the
quarantined file page by page (pages.py) and re-queues, in the live buffer, the records
that can still be read and are still owed to the collector. Records keep their content and
clock quality and get **fresh seqs**: their old seqs lie below what the fresh buffer has
already sent, so the collector would drop them as duplicates.

What it never re-queues, so that nothing is counted twice:
- a record at or below the highest acknowledged seq known: the damaged file's own mark and
  the one the quarantine noted from the marks file (the collector has those records);
- a count whose period the fresh buffer's cumulative counter already re-covered (the
  quarantine carried that counter's state over and resumed after it);
- a reading whose dedupe key the live buffer holds: the device re-sent it after the switch
  and it was taken then (interval periods, occupancy instants, transaction ids).
Held readings (waiting for a trusted clock) go back to the held table unchanged.

It runs with the agent stopped (the buffer's lock says so otherwise), in one transaction with
a note of the file's SHA-256, so a second run on the same file re-queues nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from footfall.agent.buffer import Buffer
from footfall.agent.buffer.errors import BufferError
from footfall.agent.buffer.pages import Found, scan
from footfall.agent.buffer.schema import QUARANTINE_KEY, SALVAGED_KEY
from footfall.agent.buffer.txn import Txn
from footfall.agent.decode.counters import cumulative_key, dedupe_key
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import Count, SensorEvent

# How long keys of salvaged readings are remembered (the shipped profiles' dedupe window).
SALVAGE_KEEP_MS = 7 * 86_400_000


class SalvageError(Exception):
    """Salvage cannot run (file missing, agent running, already salvaged); the message says what to do."""


@dataclass(slots=True)
class SalvageReport:
    """What one salvage found and did."""

    file: str
    pages: int = 0
    unreadable_pages: int = 0
    unreadable_cells: int = 0
    free_pages: int = 0
    found: int = 0
    acked_mark: int = 0
    skipped_acked: int = 0
    skipped_recounted: int = 0
    skipped_resent: int = 0
    requeued: int = 0
    first_seq: int = 0
    last_seq: int = 0
    held: int = 0
    dry_run: bool = False

    def lines(self) -> list[str]:
        """The report in plain words."""
        out = [
            f"scanned {self.file}: {self.pages} pages ({self.unreadable_pages} unreadable, "
            f"{self.unreadable_cells} unreadable rows, {self.free_pages} free), {self.found} records, "
            f"{self.held} held readings",
            f"already acknowledged by the collector (seq <= {self.acked_mark}): {self.skipped_acked} skipped",
        ]
        if self.skipped_recounted or self.skipped_resent:
            out.append(
                f"counted again since the buffer was replaced: {self.skipped_recounted} re-covered by a counter, "
                f"{self.skipped_resent} re-sent by their device: skipped"
            )
        verb = "would re-queue" if self.dry_run else "re-queued"
        seqs = f" as seq {self.first_seq}-{self.last_seq}" if self.requeued and not self.dry_run else ""
        out.append(f"{verb} {self.requeued} records{seqs} and {self.held} held readings")
        return out


async def salvage(buffer_file: Path, damaged: Path, *, max_size: int, dry_run: bool = False) -> SalvageReport:
    """Re-queue into the buffer at `buffer_file` what can be read from `damaged`; see the module docstring."""
    damaged, digest, found = await asyncio.to_thread(_read_damaged, damaged, buffer_file)
    report = SalvageReport(
        file=damaged.name,
        pages=found.pages,
        unreadable_pages=found.bad_pages,
        unreadable_cells=found.bad_cells,
        free_pages=found.free_pages,
        found=len(found.records),
        held=len(found.pending),
        dry_run=dry_run,
    )
    buffer = Buffer(buffer_file, max_size=max_size, commit_interval=0)
    try:
        await buffer.open()
    except BufferError as exc:
        raise SalvageError(f"{exc} (stop the agent, e.g. `systemctl stop footfall-agent`, then salvage)") from None
    try:
        quarantine = _quarantine_entry(await buffer.get_state(QUARANTINE_KEY), damaged.name)
        if not quarantine and "acked_seq" not in found.meta:
            raise SalvageError(
                f"{damaged.name} is not one this agent moved aside and its own acked mark is unreadable: "
                "there is no telling which of its records the collector already has"
            )
        # The marks file now numbers the fresh buffer: the old file's mark is the one the quarantine noted.
        report.acked_mark = max(found.meta.get("acked_seq", 0), int(quarantine.get("acked", 0)))
        resumed = {k: v for k, v in dict(quarantine.get("resumed", {})).items() if isinstance(v, int)}

        def requeue(txn: Txn) -> None:
            done = txn.get_state(SALVAGED_KEY) or {}
            if digest in done:
                raise SalvageError(
                    f"{damaged.name} was already salvaged ({done[digest].get('requeued', 0)} records re-queued); "
                    "nothing to do"
                )
            _requeue(txn, found, report, resumed)
            done[digest] = {"file": damaged.name, "at_ms": txn.now_ms, "requeued": report.requeued}
            txn.put_state(SALVAGED_KEY, done)
            if dry_run:
                raise _DryRun

        with contextlib.suppress(_DryRun):
            await buffer.write(requeue)
    finally:
        await buffer.close()
    return report


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def _requeue(txn: Txn, found: Found, report: SalvageReport, resumed: dict[str, int]) -> None:
    # Keys the quarantine carried over from this very file: a resend after the switch met them and was dropped.
    carried = {(scope, key) for scope, key, _ in found.seen}
    for seq in sorted(found.records):
        taken_ms, body = found.records[seq]
        if seq <= report.acked_mark:
            report.skipped_acked += 1
            continue
        record = unpack_record(body)
        if isinstance(record, Count):
            counter = cumulative_key(record.sensor, record.line)
            if counter in resumed and record.end_ms > resumed[counter]:
                report.skipped_recounted += 1
                continue
        if not isinstance(record, SensorEvent):
            scope, key = dedupe_key(record)
            if not txn.first_seen(scope, key, SALVAGE_KEEP_MS) and (scope, key) not in carried:
                report.skipped_resent += 1
                continue
        new_seq = txn.append(record, taken_ms=taken_ms)
        report.first_seq = report.first_seq or new_seq
        report.last_seq = new_seq
        report.requeued += 1
    for boot, offset, taken_ms, held in found.pending.values():
        txn.hold_packed(boot, offset, taken_ms, held)


def _read_damaged(damaged: Path, buffer_file: Path) -> tuple[Path, str, Found]:
    damaged = _locate(damaged, buffer_file.parent)
    if damaged.resolve() == buffer_file.resolve():
        raise SalvageError(f"{damaged} is the live buffer; give a quarantined file (buffer.sqlite.corrupt-...)")
    return damaged, _digest(damaged), scan(damaged)


def _quarantine_entry(state: dict[str, Any] | None, name: str) -> dict[str, Any]:
    for entry in (state or {}).get("files", []):
        if isinstance(entry, dict) and entry.get("file") == name:
            return entry
    return {}


def _locate(damaged: Path, state_dir: Path) -> Path:
    for candidate in (damaged, state_dir / damaged.name):
        if candidate.is_file():
            return candidate
    raise SalvageError(f"no file {damaged} (quarantined files are in {state_dir}: buffer.sqlite.corrupt-...)")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    for part in (path, path.with_name(path.name + "-wal")):
        if part.exists():
            with part.open("rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
    return sha.hexdigest()
