"""Outages agents report: buffer gaps and sensors that went offline, turned into rows of `outages` at ingest.

A `gap` event names the seqs the agent's buffer dropped (lost_first..lost_last) but not their
times, which died with them. Their window is bounded by the records that survived around them:
from the newest stored record before the loss to the oldest one after it (by seq, so by the
order the agent took them), never later than the gap event itself. Records after the loss are
uploaded before the gap event (it comes last), so they are already stored when it is ingested.
With no record before the loss, the window opens at the agent's enrollment.

An `offline` event opens an outage for its sensor (or for the whole agent, sensor `agent`); the
next `online` event of the same sensor closes it. Events arrive in seq order (one agent's batches
are serialised by its row lock), so the statements run in the order of the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from footfall.protocol.records import SensorEvent

from .rollups import from_ms

# The record before and after the lost seqs, across the four raw tables, by the (agent_id, seq) indexes.
_NEIGHBOUR = """(
  SELECT t FROM (
    (SELECT seq, {count_time} AS t FROM people_counts WHERE agent_id = %(agent)s AND seq {op} %(bound)s
     ORDER BY seq {order} LIMIT 1)
    UNION ALL (SELECT seq, at FROM occupancy WHERE agent_id = %(agent)s AND seq {op} %(bound)s
     ORDER BY seq {order} LIMIT 1)
    UNION ALL (SELECT seq, at FROM transactions WHERE agent_id = %(agent)s AND seq {op} %(bound)s
     ORDER BY seq {order} LIMIT 1)
    UNION ALL (SELECT seq, at FROM sensor_events WHERE agent_id = %(agent)s AND seq {op} %(bound)s
     AND seq <> %(seq)s ORDER BY seq {order} LIMIT 1)
  ) AS n ORDER BY seq {order} LIMIT 1
)"""
_BEFORE = _NEIGHBOUR.format(count_time="period_end", op="<", order="DESC").replace("%(bound)s", "%(first)s")
_AFTER = _NEIGHBOUR.format(count_time="period_start", op=">", order="ASC").replace("%(bound)s", "%(last)s")

_GAP = f"""
INSERT INTO outages (org_id, site_id, agent_id, sensor, kind, starts_at, ends_at, lost_first, lost_last, detail, seq)
SELECT %(org)s, %(site)s, %(agent)s, %(sensor)s, 'gap', least(b.t, a.t), a.t, %(first)s, %(last)s, %(detail)s, %(seq)s
FROM (SELECT coalesce({_BEFORE}, (SELECT enrolled_at FROM agents WHERE id = %(agent)s)) AS t) AS b,
     (SELECT least(coalesce({_AFTER}, %(at)s), %(at)s) AS t) AS a
"""
_OFFLINE = """
INSERT INTO outages (org_id, site_id, agent_id, sensor, kind, starts_at, detail, seq)
SELECT %(org)s, %(site)s, %(agent)s, %(sensor)s, 'offline', %(at)s, %(detail)s, %(seq)s
WHERE NOT EXISTS (SELECT 1 FROM outages WHERE agent_id = %(agent)s AND sensor = %(sensor)s
                  AND kind = 'offline' AND ends_at IS NULL)
"""
_ONLINE = """
UPDATE outages SET ends_at = greatest(starts_at, %(at)s)
WHERE agent_id = %(agent)s AND sensor = %(sensor)s AND kind = 'offline' AND ends_at IS NULL
"""


def statements(org_id: str, site_id: str, agent_id: str, events: Sequence[SensorEvent]) -> list[tuple[str, Any]]:
    """The SQL for `events` (gap, offline and online only), in their order, to run after the raw rows are written."""
    out: list[tuple[str, Any]] = []
    for event in events:
        params = {
            "org": org_id, "site": site_id, "agent": agent_id, "sensor": event.sensor, "at": from_ms(event.at_ms),
            "detail": event.detail, "seq": event.seq, "first": event.lost_first, "last": event.lost_last,
        }
        if event.kind == "gap":
            if event.lost_first <= 0 or event.lost_last < event.lost_first:
                continue  # a gap event that names no lost seqs says nothing about any period
            out.append((_GAP, params))
        elif event.kind == "offline":
            out.append((_OFFLINE, params))
        elif event.kind == "online":
            out.append((_ONLINE, params))
    return out
