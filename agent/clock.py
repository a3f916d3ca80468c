"""The agent's clock: when its own wall-clock time can be believed, and what happens until then.

A store gateway often has no battery-backed clock: it boots in 1970, or at the time it last
saved, and is right only once NTP has synchronised it. Readings whose time the *agent*
supplies (a poll's time, a receipt time used as the reading's time, the periods the agent
cuts from cumulative totals) would carry that wrong time. Readings whose time the *device*
supplies keep it: this module is about the agent's own clock only.

When the clock is trustworthy (`Trust.trusted`):
- never while it reads earlier than `[clock] not_before` (default: this agent's build date);
- at once when the kernel says it is synchronised (`adjtimex`, agent/timesync.py: what
  `timedatectl` shows as "System clock synchronized"), or when the collector's clock agrees with ours within
  `[clock] max_skew` (every collector answer carries its time; while untrusted the agent
  also asks `GET /v1/health` every `PROBE_EVERY_S`);
- with `require_sync = false` also when it is merely plausible: not earlier than the last
  trusted commit (`wall_high_ms`);
- trust persists while the clock runs continuously: across agent restarts in the same boot
  with the same offset, and when the kernel's sync flag later lapses. It is lost when the
  clock *steps*: wall time minus monotonic time (CLOCK_BOOTTIME, which keeps counting
  through suspend) moves by more than `STEP_MS`, as it does when NTP first sets the clock or
  someone runs `date -s`. At start, a clock behind the last trusted commit is not trusted
  until confirmed.

Meanwhile every agent-timed record is written with a `Stamp`: wall time, monotonic time and
the kernel's boot id. Re-stamping is exact arithmetic: within one boot, monotonic time does
not jump, so a record stamped with offset `o = wall - mono` gets every time shifted by
`o_trusted - o` once the offset `o_trusted` is trusted (`clock = "restamped"`). Records of an
earlier boot that never got a trusted clock cannot be re-stamped (their monotonic clock
started from an unknown moment): they are uploaded flagged `clock = "suspect"`, placed as
early as they can have happened (just after the last trusted commit, kept before this boot
started) - see `Buffer.restamp`. Until the clock is trusted such records are held in the
buffer's `pending` table, not uploaded: holding loses nothing, and the collector never gets
a time we know to be wrong. Gap events are the exception: what they report (the seqs the
buffer lost) needs no clock, so they go at once, their time flagged `suspect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from footfall.agent.timesync import kernel_synchronized
from footfall.protocol.signing import HEADER_SERVER_TIME

from footfall.logs import event

log = logging.getLogger("footfall.agent.clock")

# This release's build date: a wall clock earlier than it is certainly wrong. Bumped at release.
BUILD_DATE = datetime(2026, 11, 1, tzinfo=UTC)
# A change of (wall - monotonic) beyond this is a step, not drift: NTP slews smaller errors.
STEP_MS = 1000
CHECK_EVERY_S = 1.0
PROBE_EVERY_S = 30.0
HEALTH_PATH = "/v1/health"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True, slots=True)
class Stamp:
    """When something happened, by the agent's clocks, and whether the wall time can be believed."""

    wall_ms: int
    mono_ms: int
    boot_id: str
    trusted: bool

    @property
    def offset_ms(self) -> int:
        """Wall minus monotonic time: constant while the clock does not step."""
        return self.wall_ms - self.mono_ms


@dataclass(frozen=True, slots=True)
class Trust:
    """The clock's state: trusted or not, why, and the offset it was judged at."""

    trusted: bool
    reason: str
    source: str = ""  # what made it trusted: ntp, collector, plausible, continued
    boot_id: str = ""
    offset_ms: int = 0
    since_ms: int = 0
    detail: str = ""


def boottime() -> float:
    """Seconds since boot, counting suspend (CLOCK_BOOTTIME); never steps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def read_boot_id() -> str:
    """The kernel's random id of this boot; a fresh random id when unreadable (nothing can then be re-stamped)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return f"unknown-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class ClockSource:
    """Where the agent reads time. The defaults are the real clocks; tests inject their own."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = boottime
    boot_id: Callable[[], str] = read_boot_id
    synced: Callable[[], bool | None] = kernel_synchronized


@dataclass(frozen=True, slots=True)
class ClockSettings:
    """What `[clock]` says (see agent/config.py ClockSection)."""

    require_sync: bool = True
    not_before_ms: int = int(BUILD_DATE.timestamp() * 1000)
    max_skew_s: float = 10.0


class AgentClock:
    """Judges the wall clock and stamps agent-timed readings. `stamp()` may be called from any thread."""

    def __init__(self, settings: ClockSettings | None = None, source: ClockSource | None = None) -> None:
        self.settings = settings or ClockSettings()
        self.source = source or ClockSource()
        self.boot_id = self.source.boot_id()
        self.wall_high_ms = 0
        # Replaced whole, never mutated: other threads read it without a lock.
        self.trust = Trust(False, "starting", boot_id=self.boot_id)
        self.synced: bool | None = None
        self.skew_s: float | None = None
        self.changes = 0
        self._confirmed_offset: int | None = None
        self._disagreed = False
        # Set when the clock became trusted and held readings wait to be re-stamped.
        self.became_trusted = asyncio.Event()

    def now_ms(self) -> int:
        """The wall clock in milliseconds."""
        return int(self.source.wall() * 1000)

    def stamp(self) -> Stamp:
        """Now, by both clocks. Untrusted if the clock stepped since it was last judged, even if not yet noticed."""
        wall = int(self.source.wall() * 1000)
        mono = int(self.source.mono() * 1000)
        trust = self.trust
        trusted = trust.trusted and abs((wall - mono) - trust.offset_ms) <= STEP_MS
        return Stamp(wall, mono, self.boot_id, trusted)

    def start(self, *, wall_high_ms: int = 0, saved: dict[str, Any] | None = None) -> Trust:
        """Judge the clock at start from the last trusted commit time and the state saved by the last run."""
        self.wall_high_ms = max(self.wall_high_ms, wall_high_ms)
        stamp = self.stamp()
        if (
            saved
            and saved.get("trusted")
            and saved.get("boot_id") == self.boot_id
            and isinstance(saved.get("offset_ms"), int)
            and abs(stamp.offset_ms - saved["offset_ms"]) <= STEP_MS
        ):
            # Same boot, and the clock has not stepped since the last run trusted it.
            self.trust = Trust(True, "continued", "continued", self.boot_id, stamp.offset_ms, stamp.wall_ms)
        self.check(at_start=True)
        return self.trust

    def saved_state(self) -> dict[str, Any]:
        """What `start` needs next time (kept in the buffer)."""
        return {"trusted": self.trust.trusted, "boot_id": self.boot_id, "offset_ms": self.trust.offset_ms}

    def observe_collector(
        self, server_s: float, sent_s: float, received_s: float, *, resolution_s: float = 1.0
    ) -> None:
        """A collector's answer carried its time, truncated to `resolution_s` (whole seconds in the header)."""
        # Truncated, so the collector's time was server_s + resolution/2, give or take resolution/2.
        local = (sent_s + received_s) / 2
        skew = local - (server_s + resolution_s / 2)
        self.skew_s = round(skew, 3)
        slack = self.settings.max_skew_s + (received_s - sent_s) / 2 + resolution_s / 2
        offset = int(received_s * 1000) - int(self.source.mono() * 1000)
        if abs(skew) <= slack:
            self._confirmed_offset = offset
            self._disagreed = False
        else:
            self._confirmed_offset = None
            self._disagreed = True
        self.check()

    def check(self, *, at_start: bool = False) -> bool:
        """Judge the clock now; True when it just became trusted (held readings can be re-stamped)."""
        wall = int(self.source.wall() * 1000)
        mono = int(self.source.mono() * 1000)
        offset = wall - mono
        before = self.trust
        stepped = not at_start and before.since_ms > 0 and abs(offset - before.offset_ms) > STEP_MS
        self.synced = self.source.synced()
        confirmed = self._confirmed_offset is not None and abs(offset - self._confirmed_offset) <= STEP_MS
        floor = self.settings.not_before_ms
        if wall < floor:
            detail = f"the clock reads {_iso(wall)}, before this agent was built ({_iso(floor)})"
            after = self._untrusted("before_build", wall, offset, detail)
        elif self.synced:
            after = self._trusted("ntp", wall, offset)
        elif before.trusted and not stepped and not (self._disagreed and before.source != "ntp"):
            after = replace(before, offset_ms=offset)
        elif confirmed:
            after = self._trusted("collector", wall, offset)
        elif not self.settings.require_sync and wall + STEP_MS >= self.wall_high_ms and not self._disagreed:
            after = self._trusted("plausible", wall, offset)
        elif self._disagreed:
            after = self._untrusted(
                "disagrees_with_collector", wall, offset, f"off by {self.skew_s:+.0f} s from the collector's clock"
            )
        elif stepped:
            after = self._untrusted(
                "stepped", wall, offset, f"the clock stepped by {(offset - before.offset_ms) / 1000:+.1f} s"
            )
        elif wall + STEP_MS < self.wall_high_ms:
            after = self._untrusted(
                "behind_last_reading",
                wall,
                offset,
                f"the clock reads {_iso(wall)}, before the last trusted commit at {_iso(self.wall_high_ms)}",
            )
        else:
            after = self._untrusted(
                "not_synchronized", wall, offset, "the kernel reports no NTP synchronisation and the collector "
                "has not confirmed the time yet"
            )
        if after.trusted == before.trusted and after.reason == before.reason:
            self.trust = replace(after, since_ms=before.since_ms or after.since_ms)
            if after.trusted and stepped:
                # Still trusted (NTP stepped it), but stamps taken since the step were held: re-stamp them.
                event(log, "clock_stepped", step_ms=offset - before.offset_ms, source=after.source)
                self.became_trusted.set()
                return True
            return False
        self.trust = after
        self.changes += 1
        level = logging.INFO if after.trusted else logging.WARNING
        event(log, "clock_trusted" if after.trusted else "clock_untrusted", level, reason=after.reason,
              detail=after.detail, wall=_iso(wall), was=before.reason)
        if after.trusted and not before.trusted:
            self.became_trusted.set()
            return True
        return False

    def _trusted(self, source: str, wall: int, offset: int) -> Trust:
        if self.trust.trusted and self.trust.source == source:
            return replace(self.trust, offset_ms=offset)
        return Trust(True, source, source, self.boot_id, offset, wall, f"trusted ({source})")

    def _untrusted(self, reason: str, wall: int, offset: int, detail: str) -> Trust:
        return Trust(False, reason, "", self.boot_id, offset, wall, detail)

    def status(self) -> dict[str, Any]:
        """JSON-ready, for status.json and the heartbeat."""
        out = asdict(self.trust)
        out["state"] = "ok" if self.trust.trusted else "untrusted"
        out["kernel_synced"] = self.synced
        out["collector_skew_s"] = self.skew_s
        out["wall_high_ms"] = self.wall_high_ms
        return out


class Restamper(Protocol):
    """What the clock keeper needs from the buffer (agent/buffer/ implements it)."""

    def restamp(self, trust: Trust, stamp: Stamp) -> Awaitable[object]:
        """Move held records into the upload queue with corrected (or flagged) times."""
        ...

    def save_clock(self, state: dict[str, Any], untrusted_event: str | None) -> Awaitable[object]:
        """Keep the clock's state for the next start; record an untrusted-clock event if given."""
        ...


async def collector_time(session: aiohttp.ClientSession, base_url: str) -> tuple[float, float, float] | None:
    """(server seconds, local send time, local receive time) from `GET /v1/health`; None when unreachable."""
    sent = time.time()
    try:
        async with session.get(base_url.rstrip("/") + HEALTH_PATH) as response:
            await response.read()
            header = response.headers.get(HEADER_SERVER_TIME)
    except (aiohttp.ClientError, TimeoutError) as exc:
        event(log, "clock_probe_failed", logging.DEBUG, error=str(exc) or type(exc).__name__)
        return None
    received = time.time()
    try:
        return (float(header), sent, received) if header is not None else None
    except ValueError:
        return None


async def keep(
    clock: AgentClock,
    buffer: Restamper,
    collector_url: Callable[[], str],
    *,
    request_timeout: float = 10.0,
) -> None:
    """Run for ever: judge the clock every second, ask the collector's time while untrusted, re-stamp on trust."""
    last_probe = -PROBE_EVERY_S
    was_trusted = clock.trust.trusted
    reason = clock.trust.reason
    await buffer.save_clock(clock.saved_state(), _worth_an_event(clock.trust))
    if clock.trust.trusted:
        await buffer.restamp(clock.trust, clock.stamp())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session:
        while True:
            clock.check()
            if clock.trust.reason != reason:
                reason = clock.trust.reason
                last_probe = -PROBE_EVERY_S  # the clock changed (a step, a lost sync): ask the collector now
            url = collector_url()
            if not clock.trust.trusted and url and time.monotonic() - last_probe >= PROBE_EVERY_S:
                last_probe = time.monotonic()
                answer = await collector_time(session, url)
                if answer is not None:
                    clock.observe_collector(*answer)
            if clock.trust.trusted != was_trusted:
                was_trusted = clock.trust.trusted
                await buffer.save_clock(clock.saved_state(), _worth_an_event(clock.trust))
            if clock.became_trusted.is_set():
                clock.became_trusted.clear()
                await buffer.restamp(clock.trust, clock.stamp())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(clock.became_trusted.wait(), CHECK_EVERY_S)


def _worth_an_event(trust: Trust) -> str | None:
    """The detail of a `clock` event for the collector, when the clock is known to be wrong (not merely unconfirmed)."""
    return None if trust.trusted or trust.reason == "not_synchronized" else trust.detail


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
