"""`footfall agent buffer requeue-rejected`: send again the records the collector refused, once they can pass.

A record the collector refuses as malformed is parked in the buffer's `rejected` table
(agent/buffer.py, guarantee 5): it was never counted. When the cause was the agent's (an older
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
from dataclasses import dataclass, replace
from pathlib import Path

from footfall.agent.buffer import Buffer, BufferError, RequeueResult
from footfall.agent.config.reader import ConfigError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.decode.formats import default_extractors
from footfall.agent.decode.formats.escpos import EscposOptions, printed_text
from footfall.agent.decode.profile import ProfileError
from footfall.agent.decode.profile_load import load_profiles
from footfall.agent.intake import with_source_options
from footfall.protocol.records import Record, Transaction

# What betrays a receipt kept with its printer commands: ESC, GS, FS or DLE in its text.
_PRINTER_COMMAND = re.compile("[\x1b\x1d\x1c\x10]")
_DEFAULT_CODEPAGE = "cp437"


class RequeueError(Exception):
    """The tool cannot run (the agent is running, no buffer); the message says what to do."""


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
        result = await buffer.requeue_rejected(repair, dry_run=dry_run)
    finally:
        await buffer.close()
    return RequeueReport(result, dry_run)
