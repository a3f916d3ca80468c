"""The size bound (guarantee 6): past `max_size` the oldest records go, and a gap event says exactly which.

Dropping goes down to `LOW_WATER` of the bound, so an uplink down for days writes one gap
event per tenth of the buffer rather than one per commit. A gap event that is itself dropped
passes its range on to the new one, so the collector always hears of every lost seq. The
writer thread calls this at a commit only when no batch is out (`Buffer.claim`): a record that
reaches the collector is never also reported lost.
"""

from __future__ import annotations

import logging

from footfall.agent.buffer.ledger import row_cost
from footfall.agent.buffer.txn import Txn
from footfall.protocol.envelope import unpack_record
from footfall.protocol.records import SensorEvent

from footfall.logs import event

log = logging.getLogger("footfall.agent.buffer")

# Dropping down to 90 % of the bound on overflow writes one gap event per tenth of the
# buffer, instead of one per commit while an uplink is down for days.
LOW_WATER = 0.9


def drop_oldest(txn: Txn, max_size: int) -> None:
    """Drop the oldest records down to the low-water mark and record the loss as gap events."""
    excess = txn.ledger.bytes - int(max_size * LOW_WATER)
    freed = dropped = first_seq = last_seq = 0
    carried: list[tuple[int, int]] = []
    for seq, body_len, gap_body in txn.oldest():
        if freed >= excess:
            break
        first_seq = first_seq or seq
        last_seq = seq
        freed += row_cost(body_len)
        dropped += 1
        if gap_body is not None:
            old = unpack_record(gap_body)
            assert isinstance(old, SensorEvent)
            carried.append((old.lost_first, old.lost_last))
    if not dropped:
        return
    txn.drop_through(last_seq)
    for lost_first, lost_last in merge_ranges([*carried, (first_seq, last_seq)]):
        txn.append_gap(
            SensorEvent(
                sensor="agent",
                at_ms=txn.now_ms,
                kind="gap",
                detail=f"buffer over its {max_size}-byte bound: dropped the oldest records",
                lost_first=lost_first,
                lost_last=lost_last,
            )
        )
    event(log, "buffer_overflow", logging.WARNING, dropped=dropped, lost_first=first_seq, lost_last=last_seq)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out
