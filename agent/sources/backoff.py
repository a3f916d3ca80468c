"""How long to wait before trying a device (or a transport's start) again: doubling delays with jitter.

Every reconnect loop of the agent uses it: a device's own (sources/device.py `keep_running`),
the supervisor of a transport that could not start (agent/supervise.py), and the short retries
of a frame the buffer could not commit. "Equal jitter" (never less than half the ceiling) keeps
a dead device from being hammered, and a fleet of gateways that lost the same broker from
reconnecting in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


class ReconnectOptions(Protocol):
    """A device's reconnect keys (every pulling transport's options have them)."""

    @property
    def reconnect_min(self) -> float:
        """The first delay."""
        ...

    @property
    def reconnect_max(self) -> float:
        """The longest delay."""
        ...

    @property
    def stable_after(self) -> float:
        """How long a session must last to count as healthy."""
        ...


@dataclass(slots=True)
class Backoff:
    """Delays that double from `initial` up to `maximum`, each with up to half of it taken off at random.

    `stable_after`: how long a session must stay up (without a frame) before `keep_running`
    counts it as healthy and starts the delays again from `initial`.
    """

    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def of(cls, options: ReconnectOptions) -> Backoff:
        """The backoff a device's `reconnect_min`, `reconnect_max` and `stable_after` keys ask for."""
        return cls(options.reconnect_min, options.reconnect_max, stable_after=options.stable_after)

    def next(self) -> float:
        """The delay before the next attempt (and count this attempt)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # "Equal jitter": never less than half the ceiling, so a dead device is not hammered.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """The device proved healthy: start again from `initial` next time."""
        self.attempt = 0
