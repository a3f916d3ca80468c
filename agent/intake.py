"""A source's way in: one frame is decoded by its adapter profile, then taken in one buffer commit.

Decoding happens before the transaction (it is pure and may fail: then nothing is written);
the counter arithmetic runs inside it (`counters.take`), so its state commits with the records.
The awaited result comes back only once the commit is durable, which is when a transport may
acknowledge the device. An intake is what a transport sees of decoding and the buffer (the
`Intake` protocol of sources/base.py): a frame that does not fit its adapter is refused with
`FrameRefused` (`NotAuthentic` for a bad signature), one that cannot be committed with
`NotStored`, and a serial transport gets its framer here, so no transport imports either side.

An intake binds its profile to its source: the source's `params` replace the profile's
`${name}`s, and a profile whose webhooks are signed needs the source's `secret`; every frame
is checked against it before anything else (`SignatureError`, nothing written).

Every frame is stamped on arrival by the agent's clock (agent/clock.py). For a profile whose
readings carry the agent's time (`[time] source = "agent"`) that stamp *is* the reading's
time: cumulative readings also get its monotonic time and boot id, and the records go
through `Txn.stamped`, which holds them while the clock is not trusted. Device-timed
readings keep the device's times whatever the agent's clock says.

A reading the collector would always refuse is refused here, before anything is written, so
the device hears it (400 over HTTP) instead of the reading sitting on the gateway as "refused
by the collector": decoding checks each record with the protocol's `validate`, and the intake
adds what decoding cannot know: a device's time more than a day ahead of the agent's clock
(only while that clock is trusted), and the times of cumulative readings (whose records the
counter arithmetic makes later, from two of them). A running total itself is not bounded: a
32-bit counter wraps near 4.3 billion, and only the people between two totals are a record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from zoneinfo import ZoneInfo

from footfall.agent.buffer import Buffer, BufferError, Txn
from footfall.agent.clock import Stamp
from footfall.agent.config.reader import ConfigError, Problem
from footfall.agent.config.sections import SourceConfig
from footfall.agent.decode.counters import CounterPolicy, TakeResult, take
from footfall.agent.decode.errors import DecodeError
from footfall.agent.decode.extract import DecodeContext, Extraction, extract_frame
from footfall.agent.decode.formats import Extractor
from footfall.agent.decode.framing import Framer
from footfall.agent.decode.profile import Profile, ProfileError, param_problems
from footfall.agent.decode.profile_load import bind_profile
from footfall.agent.decode.readings import CumulativeCount, Reading
from footfall.agent.decode.signature import SignatureError, verify
from footfall.agent.sources.base import Frame, FrameRefused, NotAuthentic, NotStored, SourceHealth
from footfall.protocol.records import Count, Occupancy, Transaction, time_problem

from footfall.logs import RateLimitedLog, event

log = logging.getLogger("footfall.agent.intake")
_SEP = "\x1f"
# How long a `once` key (a taken file) is remembered: far longer than any restart after a crash.
ONCE_KEEP_MS = 90 * 86_400_000
# How long after its arrival a frame may reach the intake before its arrival time is distrusted (frame_stamp).
_ARRIVAL_SLACK_MS = 5_000


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
        stamps: Callable[[], Stamp] | None = None,
    ) -> None:
        problems = source_problems(source, profile)
        if problems:
            raise ConfigError(f"source {source.name!r}", [Problem("", p) for p in problems])
        try:
            profile = bind_profile(profile, {profile.format: extractor}, source.params)
        except ProfileError as exc:
            raise ConfigError(f"source {source.name!r} (params of adapter {profile.name})", exc.problems) from None
        profile = with_source_options(profile, extractor, source)
        self.source = source
        self.profile = profile
        self.extractor = extractor
        self.buffer = buffer
        self.context = DecodeContext(source=source.name, zone=zone)
        self.policy = CounterPolicy(
            keep_ms=int(profile.dedupe.window * 1000),
            modulus=profile.modulus,
            by=profile.dedupe.by,
            void_needs_sale=profile.dedupe.void_needs_sale,
            delta_at=profile.delta_at,
        )
        self.health = SourceHealth(source.name, source.transport, source.adapter)
        self._clock = clock
        # A device spewing garbage must not flood the log: one line per minute, with a count.
        self._rejected_log = RateLimitedLog(log, every=60.0)
        self._stamps = stamps
        self._last_arrival = (0, "", 0)  # (received_ms, boot id, mono_ms) of the last frame with an arrival time
        self.agent_time = profile.time.source == "agent"

    @property
    def name(self) -> str:
        """The source's name."""
        return self.source.name

    @property
    def options(self) -> object:
        """The source's transport options."""
        return self.source.options

    @property
    def adapter(self) -> str:
        """The adapter profile's name."""
        return self.profile.name

    @property
    def format_options(self) -> object:
        """The profile's format section, with the source's `adapter_options` laid over it."""
        return self.profile.options

    def framer(self) -> Framer | None:
        """A new framer for this source's byte stream, by the profile's `[framing]`; None if it has none."""
        return Framer(self.profile.framing) if self.profile.framing is not None else None

    def stamp(self) -> Stamp:
        """Now by the agent's clock (a trusted wall-clock stamp when the pipeline gave no clock)."""
        if self._stamps is not None:
            return self._stamps()
        now_ms = int(self._clock() * 1000)
        return Stamp(now_ms, int(time.monotonic() * 1000), "", True)

    @staticmethod
    def frame_stamp(frame: Frame, stamp: Stamp) -> Stamp:
        """`stamp` moved to the frame's arrival time, when its transport noted one.

        The transports make arrival times strictly increasing per device, so two frames read in one
        chunk stay two readings; the monotonic time moves by the same amount, so that periods cut
        from them are measured on the monotonic clock all the same. A frame reaches the intake
        moments after it arrived: a bigger difference means the wall clock stepped in between, and
        the stamp, which knows it, is kept.
        """
        shift = frame.received_ms - stamp.wall_ms
        if not frame.received_ms or shift == 0 or abs(shift) > _ARRIVAL_SLACK_MS:
            return stamp
        return replace(stamp, wall_ms=frame.received_ms, mono_ms=stamp.mono_ms + shift)

    def decode(self, frame: Frame) -> list[Reading]:
        """The frame's readings; DecodeError (SignatureError for a bad signature) when it does not match the profile."""
        return self.decode_frame(frame).readings

    def decode_frame(self, frame: Frame, stamp: Stamp | None = None) -> Extraction:
        """Check the frame's signature (if the profile has one), then extract its readings, skipped items and event.

        With `[time] source = "agent"` the readings' time is `stamp` (the frame's arrival, when not given).
        """
        if self.profile.signature is not None:
            options = self.source.options
            verify(
                self.profile.signature,
                frame.payload,
                frame.headers(),
                getattr(options, "secret", ""),
                getattr(options, "public_url", "") or frame.meta.get("url", ""),
            )
        if stamp is None:
            stamp = self.frame_stamp(frame, self.stamp())
        context = replace(self.context, received_ms=stamp.wall_ms)
        extraction = extract_frame(self.profile, self.extractor, frame.payload, context)
        if self.agent_time:
            extraction.readings = [
                replace(r, mono_ms=stamp.mono_ms, boot=stamp.boot_id or "-", trusted=stamp.trusted)
                if isinstance(r, CumulativeCount)
                else r
                for r in extraction.readings
            ]
        return extraction

    async def __call__(self, frame: Frame, *, once: str = "") -> TakeResult:
        """Take one frame; returns once its records are durable. Raises FrameRefused (NotAuthentic) or NotStored.

        With `once` (a key naming the frame's origin, e.g. a file's name, size, mtime and hash),
        the key is remembered in the same transaction as the records, and a frame whose key was
        already taken writes nothing: its readings all count as duplicates.
        """
        self.health.received += 1
        stamp = self.frame_stamp(frame, self.stamp())
        last_received, last_boot, last_mono = self._last_arrival
        if frame.received_ms > last_received and stamp.boot_id == last_boot and stamp.mono_ms <= last_mono:
            # The wall and monotonic clocks are read and rounded to the millisecond apart, so two frames
            # the transport stamped 1 ms apart (read in one chunk) can land on one monotonic millisecond,
            # and the second would be taken for a resend of the first: keep them apart on both clocks.
            stamp = replace(stamp, mono_ms=last_mono + 1)
        if frame.received_ms > last_received:
            self._last_arrival = (frame.received_ms, stamp.boot_id, stamp.mono_ms)
        now_ms = stamp.wall_ms
        try:
            extraction = self.decode_frame(frame, stamp)
            if not self.agent_time:
                refuse_out_of_bounds(extraction.readings, stamp.wall_ms if stamp.trusted else None)
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
            refused = NotAuthentic if isinstance(exc, SignatureError) else FrameRefused
            raise refused(str(exc)) from exc
        policy = self.policy
        readings = extraction.readings
        event_key = f"{self.source.name}\x1f{extraction.event_key}" if extraction.event_key else ""

        agent_time = self.agent_time

        def commit(txn: Txn) -> TakeResult:
            if once and not txn.first_seen(f"once{_SEP}{self.source.name}", once, ONCE_KEEP_MS):
                return TakeResult(readings=len(readings), duplicates=len(readings))
            return take(txn.stamped(stamp) if agent_time else txn, readings, policy, event=event_key)

        try:
            result = await self.buffer.write(commit)
        except BufferError as exc:
            self.health.failed(now_ms, "buffering", str(exc))
            raise NotStored(str(exc)) from exc
        # Items the profile's [where] left out count as items read and ignored, like a void of an unknown sale.
        result.readings += extraction.skipped
        result.ignored += extraction.skipped
        self.health.took(now_ms, result.accepted, result.duplicates)
        self.health.records += result.records
        if extraction.garbage:
            # Taken all the same (the text around them is read); counted so that an unknown command shows.
            self.health.garbage += extraction.garbage
            self._rejected_log(
                "frame_parts_skipped",
                logging.WARNING,
                key=self.source.name,
                source=self.source.name,
                adapter=self.profile.name,
                skipped=extraction.garbage,
                reason="commands the format does not know were skipped",
            )
        event(
            log,
            "frame_taken",
            logging.DEBUG,
            source=self.source.name,
            readings=result.readings,
            records=result.records,
            ignored=result.ignored,
            duplicates=result.duplicates,
        )
        return result


def refuse_out_of_bounds(readings: list[Reading], now_ms: int | None) -> None:
    """DecodeError naming the first device-timed reading whose time the collector would refuse (`now_ms`: trusted)."""
    for reading in readings:
        problem = reading_problem(reading, now_ms)
        if problem is not None:
            raise DecodeError(f"{_describe(reading)}: {problem}")


def reading_problem(reading: Reading, now_ms: int | None) -> str | None:
    """What the protocol's bounds refuse in a reading's times, or None."""
    times = (reading.start_ms, reading.end_ms) if isinstance(reading, Count) else (reading.at_ms,)
    for ms in times:
        problem = time_problem(ms, now_ms)
        if problem is not None:
            return f"its time {problem}"
    return None


def _describe(reading: Reading) -> str:
    if isinstance(reading, Transaction):
        return f"transaction {reading.txn_id!r}"
    if isinstance(reading, Occupancy):
        return f"the occupancy of zone {reading.zone!r}"
    return f"the count of line {reading.line!r}"


def with_source_options(profile: Profile, extractor: Extractor, source: SourceConfig) -> Profile:
    """The profile with the source's `adapter_options` laid over its format section (ConfigError if wrong).

    A Modbus register map or an ESC/POS receipt template differs from one installation to the
    next; the profile gives the defaults, agent.toml the exceptions. A format whose options
    imply a counter width (a Modbus u16 register) sets the profile's wrap modulus from them.
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


def source_problems(source: SourceConfig, profile: Profile) -> list[str]:
    """What a source lacks for its adapter: params it must give or cannot give, a secret for signed webhooks."""
    problems = param_problems(profile, source.params)
    if profile.signature is not None and not getattr(source.options, "secret", ""):
        problems.append(
            f"adapter {profile.name} checks {profile.signature.scheme} webhook signatures: set the source's secret"
        )
    return problems
