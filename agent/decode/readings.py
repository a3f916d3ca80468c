"""What extraction yields: protocol records without their seq, plus cumulative counter readings.

Interval counts, occupancy and transactions already have the shape of their protocol
record (`seq` stays 0 until the buffer assigns it). A cumulative counter's reading is a
running total, which only the counter arithmetic (counters.py), with the previous total,
can turn into a `Count`.
"""

from __future__ import annotations

from dataclasses import dataclass

from footfall.protocol.records import Count, Occupancy, Transaction


@dataclass(frozen=True, slots=True)
class CumulativeCount:
    """A counter's running totals at one instant (since power-on, a reset, or local midnight).

    When the agent's clock gave `at_ms` (`[time] source = "agent"`), the intake adds that
    instant's monotonic time and boot id, so that the period between two readings is measured
    on a clock that never steps (counters.py), and whether the wall clock was trusted then.
    """

    sensor: str
    line: str
    at_ms: int
    entries: int
    exits: int
    # The device's own number for the report this came from (Irisys LogEntryId), if it gives one.
    report: int | None = None
    # For a counter that restarts at local midnight: the device's local day and when it started.
    day: str = ""
    day_start_ms: int = 0
    # When the agent's clock gave `at_ms`: its monotonic time, boot id, and whether the wall clock was trusted.
    mono_ms: int = 0
    boot: str = ""
    trusted: bool = True


Reading = Count | Occupancy | Transaction | CumulativeCount
