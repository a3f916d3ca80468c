"""The in-process answer cache: hot metric queries computed once, shared by concurrent callers, dropped by ingest.

- Coalescing: concurrent requests for the same answer (same organization, sites, range,
  granularity, options) share one computation; the others await its future.
- Invalidation: every entry records the organization, the sites and the UTC span it read. The
  ingest transaction sends a notice (`pg_notify` on CHANNEL, delivered at commit) naming the site
  and the span its batch touched; entries overlapping it are dropped, and a computation in flight
  that overlaps it is not stored (it may have read the rows from before the batch).
- Several collector processes: each listens on CHANNEL on its own connection (`listen`), so a batch
  committed through any of them drops the entries of all. PostgreSQL may drop notices only with
  the listening connection; while it is down nothing is cached, and on reconnecting the cache
  starts empty, so a missed notice can never leave a stale answer behind.
- A span is widened by two days each side: a batch also changes the estimated occupancy of the
  days sharing its reset periods. Entries also expire after `ttl` seconds, as a last resort.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from footfall.logs import event

log = logging.getLogger("footfall.collector.cache")

CHANNEL = "footfall_cache"
WIDEN = timedelta(days=2)
RECONNECT_S = 2.0


def notice(org_id: str, site_id: str | None, span: tuple[datetime, datetime] | None) -> str:
    """The payload of an invalidation notice; no span means every period of the site (or of the organization)."""
    body: dict[str, Any] = {"org": org_id, "site": site_id}
    if span is not None:
        body["from"], body["to"] = span[0].isoformat(), span[1].isoformat()
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Scope:
    """What an answer read: an organization, its sites (None: all of them) and a UTC span."""

    org_id: str
    sites: frozenset[str] | None
    start: datetime
    end: datetime

    def touched_by(self, org_id: str, site_id: str | None, start: datetime | None, end: datetime | None) -> bool:
        """Whether a change to `site_id` (None: any site) over [start, end] could change this answer."""
        if org_id != self.org_id:
            return False
        if site_id is not None and self.sites is not None and site_id not in self.sites:
            return False
        if start is None or end is None:
            return True
        return start - WIDEN < self.end and end + WIDEN >= self.start


@dataclass(slots=True)
class _Pending:
    scope: Scope
    future: asyncio.Future[Any]
    dirty: bool = False


@dataclass(slots=True)
class _Entry:
    scope: Scope
    value: Any
    expires: float


@dataclass(slots=True)
class CacheStats:
    """Hits, misses, coalesced waits and invalidations since start (for health)."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    invalidated: int = 0

    def as_json(self) -> dict[str, int]:
        """A JSON-ready copy."""
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced, "invalidated": self.invalidated}


@dataclass
class AnswerCache:
    """Answers by key, with coalescing and scoped invalidation; `enabled` is False while notices may be missed."""

    ttl: float = 300.0
    max_entries: int = 2000
    clock: Callable[[], float] = time.monotonic
    enabled: bool = False
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    _pending: dict[Hashable, _Pending] = field(default_factory=dict)

    async def get(self, key: Hashable, scope: Scope, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The answer for `key`: cached, awaited from an identical computation in flight, or computed now."""
        entry = self._entries.get(key)
        if entry is not None and self.enabled and entry.expires > self.clock():
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry.value
        pending = self._pending.get(key)
        if pending is not None:
            self.stats.coalesced += 1
            return await asyncio.shield(pending.future)
        self.stats.misses += 1
        pending = _Pending(scope, asyncio.get_running_loop().create_future())
        self._pending[key] = pending
        try:
            value = await compute()
        except BaseException as exc:  # every waiter must see the failure, whatever it is; then it propagates
            pending.future.set_exception(exc)
            # Nobody may be awaiting: mark it retrieved so asyncio does not log it as lost.
            pending.future.exception()
            raise
        finally:
            del self._pending[key]
        pending.future.set_result(value)
        if self.enabled and not pending.dirty:
            self._entries[key] = _Entry(scope, value, self.clock() + self.ttl)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def invalidate(self, org_id: str, site_id: str | None, start: datetime | None, end: datetime | None) -> None:
        """Drop what a change to `site_id` over [start, end] may have made stale."""
        stale = [k for k, e in self._entries.items() if e.scope.touched_by(org_id, site_id, start, end)]
        for key in stale:
            del self._entries[key]
        self.stats.invalidated += len(stale)
        for pending in self._pending.values():
            if pending.scope.touched_by(org_id, site_id, start, end):
                pending.dirty = True

    def apply(self, payload: str) -> None:
        """Invalidate from a notice's payload (see `notice`)."""
        try:
            body = json.loads(payload)
            start = datetime.fromisoformat(body["from"]) if "from" in body else None
            end = datetime.fromisoformat(body["to"]) if "to" in body else None
            org, site = str(body["org"]), body.get("site")
        except (ValueError, KeyError, TypeError) as exc:
            # Not ours, or garbled: drop everything rather than risk a stale answer.
            event(log, "cache_notice_unreadable", logging.WARNING, payload=payload[:200], error=str(exc))
            self.clear()
            return
        self.invalidate(org, site, start, end)

    def clear(self) -> None:
        """Drop every entry; computations in flight will not be stored."""
        self._entries.clear()
        for pending in self._pending.values():
            pending.dirty = True


async def listen(dsn: str, cache: AnswerCache, stop: asyncio.Event) -> None:
    """Apply the notices of CHANNEL to `cache` until `stop` is set; the cache is enabled only while listening."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                cache.clear()
                cache.enabled = True
                event(log, "cache_listening", channel=CHANNEL)
                while not stop.is_set():
                    async for notify in conn.notifies(timeout=1.0):
                        cache.apply(notify.payload)
                        if stop.is_set():
                            break
        except psycopg.OperationalError as exc:
            event(log, "cache_listen_failed", logging.WARNING, error=str(exc).strip(), retry_in_s=RECONNECT_S)
        finally:
            cache.enabled = False
            cache.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RECONNECT_S)
