"""`footfall agent buffer requeue-rejected`: send again the records the collector refused, once they can pass.

A record the collector refuses as malformed is parked in the buffer's `rejected` table
(agent/buffer/, guarantee 5): it was never counted. When the cause was the agent's (an older
ESC/POS parser kept the printer's NUL bytes in a receipt's text), a newer agent can repair it.
This tool re-reads every parked record through today's rules and re-queues those that pass:

- repaired where today's decoder knows how: a receipt whose `raw` still holds printer commands
  is re-read by the current ESC/POS parser, in its source's code page (from agent.toml; cp437
  when the source is gone), exactly as a receipt arriving today would be;
- validated with today's protocol rules; a record still invalid stays parked, with the reason;
- appended with a **fresh seq**: its old seq lies below the collector's high-water mark, which
  would drop it as a duplicate. Since the collector never took it, it now counts once;
- in one buffer transaction, so a second run (or one after a crash) finds nothing it already
  sent, and two parked copies of one reading (same receipt, same period) are sent once.

It runs with the agent stopped (the buffer's lock refuses a second process), like `salvage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from footfall.agent.buffer import Buffer
from footfall.agent.buffer.errors import BufferError
from footfall.agent.buffer.reads import unpack_parked
from footfall.agent.buffer.txn import Txn
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.formats.escpos import EscposOptions, printed_text
from footfall.agent.decode.profile import ProfileError
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import with_source_options
from footfall.protocol.errors import MalformedBatch
from footfall.protocol.records import Count, Record, Transaction, validate

# What betrays a receipt kept with its printer commands: ESC, GS, FS or DLE in its text.
_PRINTER_COMMAND = re.compile("[\x1b\x1d\x1c\x10]")
_DEFAULT_CODEPAGE = "cp437"


class RequeueError(Exception):
    """The tool cannot run (the agent is running, no buffer); the message says what to do."""


@dataclass(slots=True)
class RequeueResult:
    """What one run did (or, in a dry run, would do)."""

    requeued: int = 0
    repaired: int = 0
    still_invalid: int = 0
    duplicates: int = 0
    first_seq: int = 0
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class Repair:
    """Today's decoder rules, for records taken by an older agent: the code page of each ESC/POS source."""

    codepages: dict[str, str]

    @classmethod
    def for_config(cls, config: AgentConfig) -> Repair:
        """The ESC/POS sources of `config` and their code pages (overrides included)."""
        extractors = default_extractors()
        try:
            profiles = load_profiles(config.agent.adapter_dirs, extractors=extractors)
        except ProfileError:
            profiles = load_profiles(extractors=extractors)
        codepages: dict[str, str] = {}
        for source in config.sources:
            profile = profiles.get(source.adapter)
            if profile is None or profile.format != "escpos":
                continue
            # Overrides the agent would refuse leave the profile's own code page.
            with contextlib.suppress(ConfigError):
                profile = with_source_options(profile, extractors[profile.format], source)
            if isinstance(profile.options, EscposOptions):
                codepages[source.name] = profile.options.codepage
        return cls(codepages)

    def __call__(self, record: Record) -> Record:
        """`record` as today's agent would have made it."""
        if isinstance(record, Transaction) and _PRINTER_COMMAND.search(record.raw):
            codepage = self.codepages.get(record.terminal, _DEFAULT_CODEPAGE)
            # The old raw was the receipt's bytes decoded in this code page: encoding gives them back.
            data = record.raw.encode(codepage, errors="replace")
            return replace(record, raw=printed_text(data, codepage).text)
        return record


@dataclass(slots=True)
class RequeueReport:
    """What one run did, in words."""

    result: RequeueResult
    dry_run: bool = False

    def lines(self) -> list[str]:
        """The report in plain words."""
        r = self.result
        verb = "would re-queue" if self.dry_run else "re-queued"
        seqs = f" as seq {r.first_seq}-{r.last_seq}" if r.requeued and not self.dry_run else ""
        out = [f"{verb} {r.requeued} parked records{seqs} ({r.repaired} repaired by today's decoder)"]
        if r.duplicates:
            out.append(f"{r.duplicates} parked copies of a reading already re-queued: dropped, not sent twice")
        if r.still_invalid:
            out.append(
                f"{r.still_invalid} still invalid: left parked, with the reason (`footfall agent status` shows it)"
            )
        if not (r.requeued or r.duplicates or r.still_invalid):
            out = ["no records are parked: nothing to do"]
        return out


async def requeue_rejected(config: AgentConfig, buffer_file: Path, *, dry_run: bool = False) -> RequeueReport:
    """Re-queue the parked records of the buffer at `buffer_file` that today's rules make valid."""
    if not await asyncio.to_thread(buffer_file.exists):
        raise RequeueError(f"no buffer at {buffer_file}: check [agent] state_dir")
    repair = Repair.for_config(config)
    buffer = Buffer(buffer_file, max_size=config.buffer.max_size, commit_interval=0)
    try:
        await buffer.open()
    except BufferError as exc:
        raise RequeueError(
            f"{exc} (stop the agent, e.g. `systemctl stop footfall-agent`, run requeue-rejected, then start it)"
        ) from None
    try:
        result = await buffer.write(lambda txn: requeue_parked(txn, repair, dry_run=dry_run))
    except _RolledBack as rolled:
        result = rolled.result
    finally:
        await buffer.close()
    return RequeueReport(result, dry_run)


def requeue_parked(txn: Txn, fix: Callable[[Record], Record], *, dry_run: bool = False) -> RequeueResult:
    """Append again, with a fresh seq, each parked record `fix` makes valid; a buffer write.

    A parked record never counted upstream (the collector refused its batch), so a fresh seq
    (its old one lies below the collector's high-water mark, which would drop it as a
    duplicate) counts it exactly once. A record still invalid after `fix` stays parked with
    the reason; a second parked copy of one reading (same dedupe key) is dropped, not sent
    twice. Moving and appending share the transaction, so a run interrupted anywhere either
    happened whole or not at all, and a second run finds nothing it already sent. A dry run
    raises `_RolledBack` with the result, which rolls the write back.
    """
    result = RequeueResult()
    taken: set[tuple[str, str]] = set()
    for seq, taken_ms, body in txn.parked():
        parked = unpack_parked(body)
        record = fix(parked)
        try:
            validate(replace(record, seq=seq))
        except MalformedBatch as exc:
            txn.keep_parked(seq, f"still invalid: {exc}")
            result.still_invalid += 1
            continue
        txn.unpark(seq)
        key = _reading_key(record)
        if key is not None and key in taken:
            result.duplicates += 1
            continue
        if key is not None:
            taken.add(key)
        new_seq = txn.append(record, taken_ms=taken_ms)
        result.first_seq = result.first_seq or new_seq
        result.last_seq = new_seq
        result.requeued += 1
        result.repaired += record != parked
    if dry_run:
        raise _RolledBack(result)
    return result


class _RolledBack(Exception):
    """Raised inside the write to roll a dry run back and carry its result out."""

    def __init__(self, result: RequeueResult) -> None:
        super().__init__("dry run")
        self.result = result


def _reading_key(record: Record) -> tuple[str, str] | None:
    """What tells two copies of one reading apart from two readings (events have no such key)."""
    if isinstance(record, Transaction):
        return f"txn{record.terminal}", f"{record.kind}\x1f{record.txn_id}"
    if isinstance(record, Count):
        return f"count{record.sensor}\x1f{record.line}", f"{record.start_ms}\x1f{record.end_ms}"
    return None
