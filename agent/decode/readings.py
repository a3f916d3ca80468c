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
    """A counter's running totals at one instant (since power-on, a reset, or local midnight)."""

    sensor: str
    line: str
    at_ms: int
    entries: int
    exits: int


Reading = Count | Occupancy | Transaction | CumulativeCount
