"""The agent's clock (agent/clock.py) with an injected clock source: boot before the build date, NTP's
first sync, a reboot, steps while running, the collector's time. What the buffer does with readings
timed by it (held, re-stamped, flagged) is tests/agent/buffer/test_clock.py."""

from __future__ import annotations

import time
from dataclasses import dataclass

from footfall.agent.clock import AgentClock, ClockSettings, ClockSource

YEAR_S = 365 * 86400


@dataclass
class FakeClocks:
    """Wall = real time + `offset_s`; monotonic = real monotonic + `mono_base` (a reboot restarts it)."""

    offset_s: float = 0.0
    mono_base: float = 0.0
    boot: str = "boot-1"
    synced: bool | None = False

    def source(self) -> ClockSource:
        return ClockSource(
            wall=lambda: time.time() + self.offset_s,
            mono=lambda: time.monotonic() + self.mono_base,
            boot_id=lambda: self.boot,
            synced=lambda: self.synced,
        )

    def reboot(self, boot: str) -> None:
        self.boot = boot
        self.mono_base = 5.0 - time.monotonic()  # "up for 5 s"


def test_when_the_clock_is_trusted() -> None:
    fake = FakeClocks(offset_s=-5 * YEAR_S, synced=True)
    clock = AgentClock(ClockSettings(), fake.source())
    assert clock.start().reason == "before_build", "synced or not, a clock before the build date is wrong"
    fake.offset_s = 0
    assert clock.check() and clock.trust.source == "ntp"

    fake.synced = False
    clock = AgentClock(ClockSettings(), fake.source())
    assert not clock.start().trusted and clock.trust.reason == "not_synchronized"
    now = time.time()
    clock.observe_collector(now + 3600, now, now)
    assert clock.trust.reason == "disagrees_with_collector" and clock.skew_s is not None and clock.skew_s < -3000
    clock.observe_collector(int(now), now, now)
    assert clock.trust.trusted and clock.trust.source == "collector"
    assert clock.stamp().trusted
    fake.offset_s = 5.0  # someone runs `date -s`
    assert not clock.stamp().trusted, "a stamp right after a step is untrusted before anyone has noticed"
    assert not clock.check() and clock.trust.reason == "stepped"
    fake.offset_s = 0
    clock.observe_collector(int(time.time()), time.time(), time.time())
    assert clock.trust.trusted

    again = AgentClock(ClockSettings(), fake.source())
    assert again.start(saved=clock.saved_state()).source == "continued", "same boot, same offset: still trusted"
    fake.reboot("boot-2")
    rebooted = AgentClock(ClockSettings(), fake.source())
    assert not rebooted.start(saved=clock.saved_state()).trusted

    lax = AgentClock(ClockSettings(require_sync=False), fake.source())
    assert lax.start(wall_high_ms=int(time.time() * 1000) - 1000).source == "plausible"
    behind = AgentClock(ClockSettings(require_sync=False), fake.source())
    assert behind.start(wall_high_ms=int(time.time() * 1000) + 3_600_000).reason == "behind_last_reading"
