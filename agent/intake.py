"""A source's way in: one frame is decoded by its adapter profile, then taken in one buffer commit.

Decoding happens before the transaction (it is pure and may fail: then nothing is written);
the counter arithmetic runs inside it (`counters.take`), so its state commits with the records.
The awaited result comes back only once the commit is durable, which is when a transport may
acknowledge the device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from zoneinfo import ZoneInfo

from footfall.agent.buffer import Buffer, BufferError, Txn
from footfall.agent.config import ConfigError, Problem, SourceConfig
from footfall.agent.decode.counters import CounterPolicy, TakeResult, take
from footfall.agent.decode.extract import DecodeContext, DecodeError, Extractor, extract
from footfall.agent.decode.profile import Profile
from footfall.agent.decode.readings import Reading
from footfall.agent.sources.base import Frame, SourceHealth
from footfall.agent.sources.supervise import RateLimitedLog

from footfall.logs import event

log = logging.getLogger("footfall.agent.intake")
_SEP = "\x1f"
# How long a `once` key (a taken file) is remembered: far longer than any restart after a crash.
ONCE_KEEP_MS = 90 * 86_400_000


def with_source_options(profile: Profile, extractor: Extractor, source: SourceConfig) -> Profile:
    """The profile with the source's `adapter_options` laid over its format section (ConfigError if wrong).

    A Modbus register map or an ESC/POS receipt template differs from one installation to the
    next; the profile gives the defaults, agent.toml the exceptions. A format whose options
    imply a counter width (a Modbus u16 register) may set the profile's wrap modulus from them.
    """
    overrides = getattr(source.options, "adapter_options", None)
    if not overrides:
        return profile
    problems: list[Problem] = []
    table = {**profile.raw_options, **overrides}
    options = extractor.parse_options(
        table,
        f"sources[{source.name!r}].adapter_options",
        lambda key, message: problems.append(Problem(key, message)),
    )
    if problems:
        raise ConfigError(f"source {source.name!r} (adapter {profile.name})", problems)
    modulus = getattr(options, "modulus", None)
    return replace(
        profile,
        options=options,
        raw_options=table,
        modulus=profile.modulus if modulus is None else modulus,
        fields={
            name: (
                replace(spec, modulus=modulus)
                if modulus is not None and spec.kind == "count" and profile.counter == "cumulative"
                else spec
            )
            for name, spec in profile.fields.items()
        },
    )


class SourceIntake:
    """Decode and commit frames for one configured source; keeps that source's health."""

    def __init__(
        self,
        source: SourceConfig,
        profile: Profile,
        extractor: Extractor,
        buffer: Buffer,
        *,
        zone: ZoneInfo | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.extractor = extractor
        self.buffer = buffer
        self.profile = with_source_options(profile, extractor, source)
        self.context = DecodeContext(source=source.name, zone=zone)
        self.policy = CounterPolicy(keep_ms=int(profile.dedupe.window * 1000), modulus=self.profile.modulus)
        self.health = SourceHealth(source.name, source.transport, source.adapter)
        self._clock = clock
        # A device spewing garbage must not flood the log: one line per minute, with a count.
        self._rejected_log = RateLimitedLog(log, every=60.0)

    def decode(self, frame: Frame) -> list[Reading]:
        """The frame's readings; DecodeError when it does not match the profile."""
        context = replace(self.context, received_ms=frame.received_ms) if frame.received_ms else self.context
        return extract(self.profile, self.extractor, frame.payload, context)

    async def __call__(self, frame: Frame, *, once: str = "") -> TakeResult:
        """Take one frame; returns once its records are durable. Raises DecodeError or BufferError.

        With `once` (a key naming the frame's origin, e.g. a file's name, size, mtime and hash),
        the key is remembered in the same transaction as the records, and a frame whose key was
        already taken writes nothing: its readings all count as duplicates.
        """
        self.health.received += 1
        now_ms = int(self._clock() * 1000)
        try:
            readings = self.decode(frame)
        except DecodeError as exc:
            self.health.failed(now_ms, "decoding", str(exc))
            self._rejected_log(
                "frame_rejected",
                logging.WARNING,
                key=self.source.name,
                source=self.source.name,
                adapter=self.profile.name,
                reason=str(exc),
            )
            raise
        policy = self.policy

        def commit(txn: Txn) -> TakeResult:
            if once and not txn.first_seen(f"once{_SEP}{self.source.name}", once, ONCE_KEEP_MS):
                return TakeResult(readings=len(readings), duplicates=len(readings))
            return take(txn, readings, policy)

        try:
            result = await self.buffer.write(commit)
        except BufferError as exc:
            self.health.failed(now_ms, "buffering", str(exc))
            raise
        self.health.took(now_ms, result.readings - result.duplicates, result.duplicates)
        event(
            log,
            "frame_taken",
            logging.DEBUG,
            source=self.source.name,
            readings=result.readings,
            records=result.records,
            duplicates=result.duplicates,
        )
        return result
