"""`POST /v1/ingest`: verify a signed batch, drop what was already committed, commit the rest in one transaction.

The checks and their order are the protocol's (protocol/ingest.py, SPEC.md §6): content type,
signing headers, the agent (its key looked up here), the timestamp window, and only then the
body, read with our limit, its signature and its decoding with our clock. This module drives
those steps: it answers the key lookups (from a short cache, or the database) and reads the
body. Every step after the body is in hashes, verifies or decodes it, and runs in a worker
thread (`asyncio.to_thread`): the decoder is bounded (protocol/envelope.py), but a legitimate
20,000-record batch is still a few hundred milliseconds of work, and no upload may hold the
event loop, and `/healthz` with it, that long.

Then ONE transaction: the agent's row `FOR UPDATE` (so concurrent uploads of one agent, on
any number of collector processes, queue here), the records above its seq high-water mark,
their raw rows and rollups (store.py), and the new mark `max(old, seq_last)`. A replayed or
retried batch therefore adds nothing, and the answer's `acked_seq` tells the agent it may
delete everything up to it.

The same transaction keeps the agent's clock picture (migration 0015): its skew (the batch's
`sent_at_ms`, the agent's own uncorrected clock, minus ours: the signed request timestamp is
corrected by the agent and would hide it), how many fresh records arrived re-stamped or
suspect (each record's `clock`), and a clock state: `skewed` beyond `CLOCK_SKEW_LIMIT_S`, else
`suspect` or `restamped` when the batch carried such records, else `ok`.

A batch may name at most MAX_NEW_SENSORS sensors and terminals this agent never sent before
(400 `too_many_sensors`, checked in the transaction): each becomes a row of the site's expected
sensors, and thousands of them would slow every query of that site. The agent's answer to a
400, halving the batch, gets a legitimate first upload of a large site through in a few steps.

Public keys of active agents are cached for a few seconds so most uploads verify without a
query; the transaction re-reads the agent row, so a revocation bites on the very next upload,
and a key that no longer matches (rotated) is looked up again rather than trusted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from aiohttp import web
from footfall.protocol.answers import IngestAnswer
from footfall.protocol.envelope import Batch
from footfall.protocol.errors import AuthError, BadSignature, BatchTooLarge, MalformedBatch, ProtocolError
from footfall.protocol.ingest import NeedBody, Opened, advance, signed_batch_steps
from footfall.protocol.records import Record, SensorEvent, Transaction
from psycopg_pool import AsyncConnectionPool

from footfall.logs import event

from .errors import ApiError, Unavailable
from .http import read_limited
from .store import AgentContext, Store

log = logging.getLogger("footfall.collector.ingest")

# Sensors and terminals one batch may introduce (see the module docstring).
MAX_NEW_SENSORS = 100
_RETRIES = 3
# An agent clock further than this from ours is shown as `skewed` (agents hold readings they time meanwhile).
CLOCK_SKEW_LIMIT_S = 30.0


@dataclass(slots=True)
class IngestStats:
    """What ingest received, stored and refused since the process started (for health and metrics)."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "batches": self.batches,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
        }


class KeyCache:
    """Recently verified public keys of active agents, each trusted for `ttl` seconds at most."""

    def __init__(self, ttl: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        """`max_entries` bounds memory whatever the number of agents; the oldest entries go first."""
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._keys: dict[str, tuple[bytes, float]] = {}

    def get(self, agent: str) -> bytes | None:
        """The cached key, or None when absent or older than the TTL."""
        entry = self._keys.get(agent)
        if entry is None:
            return None
        if self._clock() - entry[1] > self.ttl:
            del self._keys[agent]
            return None
        return entry[0]

    def put(self, agent: str, key: bytes) -> None:
        """Remember a key that was just read from the database."""
        self._keys.pop(agent, None)
        if len(self._keys) >= self.max_entries:
            del self._keys[next(iter(self._keys))]
        self._keys[agent] = (key, self._clock())

    def drop(self, agent: str) -> None:
        """Forget an agent's key (it failed to verify, or the agent is gone)."""
        self._keys.pop(agent, None)


class Ingest:
    """The ingest endpoint and its transaction; one per application."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        store: Store,
        *,
        window_s: float,
        max_body: int,
        key_ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`window_s` is the accepted signing-time skew, `max_body` the body limit, `clock` the wall clock."""
        self.pool = pool
        self.store = store
        self.window_s = window_s
        self.max_body = max_body
        self.keys = KeyCache(key_ttl)
        self.stats = IngestStats()
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler of `POST /v1/ingest`."""
        try:
            result, agent = await self._ingest(request)
        except (ApiError, ProtocolError) as exc:
            self.stats.rejected[exc.code] = self.stats.rejected.get(exc.code, 0) + 1
            event(log, "batch_rejected", logging.WARNING, code=exc.code, reason=exc.message,
                  agent=request.headers.get("X-Footfall-Agent", ""))
            raise
        self.stats.batches += 1
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        event(log, "batch_ingested", agent=agent, accepted=result.accepted, duplicates=result.duplicates,
              acked_seq=result.acked_seq)
        return web.Response(body=result.encode(), content_type="application/json", charset="utf-8")

    async def _ingest(self, request: web.Request) -> tuple[IngestAnswer, str]:
        now = self._clock()
        opened = await self._open(request, now)
        batch = opened.batch
        # The agent's own clock, as it stamped the signed batch: its request timestamp may already be
        # corrected by the offset it learnt from us (SPEC.md §4), which would hide the skew.
        return await self.commit(batch, opened.key, skew_s=batch.sent_at_ms / 1000 - now), opened.signed.agent

    async def _open(self, request: web.Request, now: float) -> Opened:
        """Drive the protocol's checks (protocol/ingest.py): keys from the cache or the database, the body read
        with our limit, and every step after it (hashing up to 8 MiB, verifying, decoding) in a worker thread."""
        steps = signed_batch_steps(request.headers, request.method, request.path, now, int(self.window_s))
        cached = False
        body: bytes | None = None
        step = advance(steps, None)
        while not isinstance(step, Opened):
            answer: bytes | None
            if isinstance(step, NeedBody):
                answer = body = await self._read_body(request)
            elif step.again and not cached:
                answer = None  # the key that did not verify came from the database: the signature is refused
            else:
                if step.again:
                    # The cached key may be one the agent has since rotated away from: ask the database once.
                    self.keys.drop(step.agent)
                answer, cached = await self._public_key(step.agent)
            step = await asyncio.to_thread(advance, steps, answer) if body is not None else advance(steps, answer)
        return step

    async def _read_body(self, request: web.Request) -> bytes:
        body = await read_limited(request, self.max_body)
        if body is None:
            raise BatchTooLarge(f"the body is over {self.max_body} bytes, this collector's limit: split the batch")
        return body

    async def _public_key(self, agent: str) -> tuple[bytes, bool]:
        """The agent's public key and whether it came from the cache; 401 for an unknown or revoked agent."""
        key = self.keys.get(agent)
        if key is not None:
            return key, True
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT public_key, status FROM agents WHERE id = %s", (agent,))
            row = await cur.fetchone()
        if row is None:
            raise AuthError(f"agent {agent!r} is not enrolled with this collector; enroll it", code="unknown_agent")
        key, status = bytes(row[0]), row[1]
        if status != "active":
            raise AuthError(f"agent {agent!r} has been revoked; enroll it again with a new token", code="revoked_agent")
        self.keys.put(agent, key)
        return key, False

    async def commit(self, batch: Batch, key: bytes, *, skew_s: float) -> IngestAnswer:
        """Commit the batch's new records, rollups and high-water mark in one transaction (retried on deadlock)."""
        for attempt in range(1, _RETRIES + 1):
            try:
                return await self._commit_once(batch, key, skew_s)
            except psycopg.errors.CheckViolation as exc:
                # A partition this process believed in was dropped (raw retention, possibly by another
                # collector): forget what it knows about partitions and make them again.
                if "no partition" not in str(exc) or attempt == _RETRIES:
                    raise
                event(log, "partition_missing", logging.WARNING, agent=batch.agent, error=str(exc).strip())
                self.store.forget_all()
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                # Nothing was committed: retrying the whole transaction is safe.
                event(log, "batch_retry", logging.WARNING, agent=batch.agent, attempt=attempt, error=str(exc))
                if attempt == _RETRIES:
                    raise Unavailable(
                        "the database kept aborting this batch's transaction; retry later",
                        headers={"Retry-After": "1"},
                    ) from exc
        raise AssertionError("unreachable: the loop returns or raises")

    async def _commit_once(self, batch: Batch, key: bytes, skew_s: float) -> IngestAnswer:
        async with self.pool.connection() as conn:
            await self.store.ensure_for(conn, batch.records)
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT a.status, a.public_key, a.hw_seq, a.org_id, a.site_id, s.timezone, s.day_reset, "
                    "a.clock_skew_s "
                    "FROM agents a JOIN sites s ON s.org_id = a.org_id AND s.id = a.site_id "
                    "WHERE a.id = %s FOR UPDATE OF a",
                    (batch.agent,),
                )
                row = await cur.fetchone()
                if row is None:
                    raise AuthError(f"agent {batch.agent!r} is not enrolled with this collector", code="unknown_agent")
                status, public_key, hw_seq, org_id, site_id, timezone, day_reset, old_skew = row
                if status != "active":
                    self.keys.drop(batch.agent)
                    raise AuthError(f"agent {batch.agent!r} has been revoked; enroll it again", code="revoked_agent")
                if bytes(public_key) != key:
                    self.keys.drop(batch.agent)
                    raise BadSignature("the agent's key changed while this batch was verified; send it again")
                fresh = [r for r in batch.records if r.seq > hw_seq]
                if fresh:
                    await _check_new_sensors(conn, batch.agent, fresh)
                    ctx = AgentContext(batch.agent, org_id, site_id, ZoneInfo(timezone), day_reset)
                    await self.store.write(conn, ctx, fresh)
                acked = max(hw_seq, batch.seq_last)
                restamped, suspect = flagged(fresh)
                state = clock_state(batch.records, skew_s)
                await conn.execute(
                    "UPDATE agents SET hw_seq = %s, last_seen_at = now(), clock_skew_s = %s, clock_state = %s, "
                    "clock_checked_at = now(), readings_restamped = readings_restamped + %s, "
                    "readings_suspect = readings_suspect + %s WHERE id = %s",
                    (acked, skew_s, state, restamped, suspect, batch.agent),
                )
        if abs(skew_s) > CLOCK_SKEW_LIMIT_S and (old_skew is None or abs(old_skew) <= CLOCK_SKEW_LIMIT_S):
            event(log, "agent_clock_skewed", logging.WARNING, agent=batch.agent, skew_s=round(skew_s, 1),
                  hint="the gateway's clock is wrong: check its NTP; readings keep their device times")
        return IngestAnswer(len(fresh), len(batch.records) - len(fresh), acked)


def flagged(records: Sequence[Record]) -> tuple[int, int]:
    """How many readings (events are not readings) arrived re-stamped, and how many suspect."""
    readings = [r for r in records if not isinstance(r, SensorEvent)]
    return sum(r.clock == "restamped" for r in readings), sum(r.clock == "suspect" for r in readings)


def clock_state(records: Sequence[Record], skew_s: float) -> str:
    """The agent's clock as one batch shows it: skewed, suspect, restamped or ok (a replay shows the same)."""
    restamped, suspect = flagged(records)
    if abs(skew_s) > CLOCK_SKEW_LIMIT_S:
        return "skewed"
    if suspect:
        return "suspect"
    return "restamped" if restamped else "ok"


def sensor_names(records: Sequence[Record]) -> set[tuple[str, str]]:
    """The (kind, name) of every sensor and terminal `records` name, as the sensors table keys them."""
    names: set[tuple[str, str]] = set()
    for record in records:
        if isinstance(record, Transaction):
            names.add(("terminal", record.terminal))
        elif not (isinstance(record, SensorEvent) and record.sensor == "agent"):
            names.add(("sensor", record.sensor))
    return names


async def _check_new_sensors(conn: psycopg.AsyncConnection[Any], agent: str, records: Sequence[Record]) -> None:
    """Refuse a batch naming more than MAX_NEW_SENSORS sensors this agent never sent (400 `too_many_sensors`)."""
    names = sensor_names(records)
    if len(names) <= MAX_NEW_SENSORS:
        return
    kinds, values = [k for k, _ in names], [n for _, n in names]
    cur = await conn.execute(
        "SELECT count(*) FROM sensors s JOIN unnest(%s::text[], %s::text[]) AS u(kind, name) "
        "ON s.kind = u.kind AND s.name = u.name WHERE s.agent_id = %s",
        (kinds, values, agent),
    )
    row = await cur.fetchone()
    new = len(names) - (row[0] if row else 0)
    if new > MAX_NEW_SENSORS:
        raise MalformedBatch(
            f"the batch names {new} sensors or terminals this collector has not had from this agent; "
            f"at most {MAX_NEW_SENSORS} new ones per batch: send fewer records per batch",
            code="too_many_sensors",
        )
