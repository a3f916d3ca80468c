"""The uploader: buffered records to the collector in signed batches, deleted only after a 2xx ack.

At-least-once, and exactly-once counted thanks to the collector's per-agent seq high-water
mark (protocol/SPEC.md section 6). The rules it keeps:

- One batch in flight, oldest records first. A batch leaves when the buffer holds
  `max_records` or `max_bytes`, or when its oldest record is `max_age` old; the buffer's
  `changed` event wakes it, it never polls.
- The body is spliced from the stored packed records (`envelope.encode_packed_records`) and
  sent signed (`collector_client.send_signed`, path `/v1/ingest`).
- What an answer means is the protocol's (`protocol/answers.interpret`: Ack, Split, Isolate,
  FixClock, Reenroll or Retry); this module only acts on it: it is the driver.
- Nothing is deleted before a 2xx; then everything its `acked_seq` covers is.
- Each attempt first claims its batch in the buffer (`Buffer.claim`): records an overflow
  dropped since the batch was read are never sent (their gap event already counts them), and
  the claimed records are spared by overflow until acked, so gap ranges stay exact.
- 413: the batch is halved and the halves sent in order. 400: halved down to the single
  record the collector refuses, which moves to the buffer's `rejected` table (logged as an
  error), and the rest goes on.
- 429 and 503 wait `Retry-After` (capped at `backoff_max`); other 5xx, timeouts and
  connection errors back off exponentially with jitter up to `backoff_max` (tenacity), for
  ever: the data stays in the buffer.
- A batch that times out is halved too, and batches stay at most that size (`batch_limit` in
  status) until a full one completes within a quarter of the timeout, which doubles the limit
  again up to `max_records`: over a slow uplink a backlog's full batches would otherwise time out
  and be sent again for ever without progress.
- 401 `timestamp_out_of_window`: the request clock's offset is corrected from the answer's
  `X-Footfall-Server-Time` and the request retried at once (only the request timestamp moves,
  never record times). Any other 401 (revoked, unknown agent, bad signature) keeps the data,
  backs off, says "re-enroll" in status, and re-reads the identity files before each retry,
  so `footfall agent enroll --force` on a running agent takes effect without a restart.
- A 2xx whose `acked_seq` is at or above the buffer's next seq means this buffer's numbering
  went backwards (the file was lost or restored): the collector would drop our records as
  duplicates, so the buffer renumbers them past its mark (`Buffer.rebase`) and sends again.
- Every answer's `X-Footfall-Server-Time` goes to `on_server_time` (the agent clock uses the
  collector to confirm its own time, agent/clock.py). A wall-clock step never stretches the
  wait for a partial batch beyond `max_age`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent.buffer import Buffer, StoredRecord, unpack_parked
from footfall.agent.collector_client import CollectorUnreachable, Reply, send_signed
from footfall.agent.config.sections import UploadSection
from footfall.agent.identity import Identity, IdentityError, load_identity, load_key
from footfall.protocol.answers import Ack, Action, FixClock, Isolate, Reenroll, Split, interpret
from footfall.protocol.envelope import CONTENT_TYPE, encode_packed_records
from footfall.protocol.ingest import INGEST_PATH
from footfall.protocol.records import Record
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never, wait_exponential, wait_random

from footfall.logs import event

log = logging.getLogger("footfall.agent.uploader")
# An upload in flight this long past its request timeout is hung (the watchdog stops pinging).
STUCK_MARGIN_S = 30.0
# What becomes of a batch once the collector has answered: acked, or halved (the other answers are retried).
Fate = Ack | Split | Isolate


class UploadError(Exception):
    """An upload attempt failed in a way worth retrying; `retry_after` is the collector's wish, if any."""

    def __init__(
        self, message: str, *, status: int = 0, retry_after: float | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out


class _Restart(Exception):
    """The buffer's content moved under a batch (partial ack, renumbering): read the next batch afresh."""


@dataclass(slots=True)
class UploadStatus:
    """What `status` and the heartbeat show about uploads."""

    state: str = "idle"  # idle, sending, backing_off, re-enroll
    last_success_ms: int = 0
    last_attempt_ms: int = 0
    last_error: str = ""
    last_error_ms: int = 0
    next_attempt_ms: int = 0
    uploaded_records: int = 0
    batches: int = 0
    attempts: int = 0
    retries: int = 0
    splits: int = 0
    rejected: int = 0
    last_rejected: str = ""
    last_rejected_ms: int = 0
    last_retry_after_s: float = 0.0
    clock_offset_s: float = 0.0
    acked_seq: int = 0
    # Records per batch right now: max_records, or less after timeouts (see the module docstring).
    batch_limit: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class Uploader:
    """Drains the buffer to the collector; `await run()` until cancelled."""

    def __init__(
        self,
        buffer: Buffer,
        settings: UploadSection,
        *,
        state_dir: Path,
        identity: Identity,
        key: Ed25519PrivateKey,
        collector_url: str = "",
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        on_server_time: Callable[[float, float, float], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.identity = identity
        self.key = key
        self.url_override = collector_url.rstrip("/")
        self.timeout = timeout
        self._clock = clock
        self._on_server_time = on_server_time
        self._in_flight_since: float | None = None
        self.status = UploadStatus(batch_limit=settings.max_records)
        # Told the seconds each request took and its status (0: no answer), for the metrics.
        self.on_response: Callable[[float, int], None] | None = None
        # Told each record the collector refused and why, so its source's health counts it.
        self.on_rejected: Callable[[Record, str], None] | None = None
        self._reload_identity = False
        self._last_post_s = 0.0
        # Doubling from backoff_initial, plus up to backoff_initial of jitter so that a fleet that
        # lost its collector at the same moment does not come back in lockstep; capped in _wait.
        self._backoff = wait_exponential(multiplier=settings.backoff_initial, max=settings.backoff_max) + wait_random(
            0, settings.backoff_initial
        )

    @property
    def collector_url(self) -> str:
        """Where batches go: `[collector] url` if set, else the URL enrollment recorded."""
        return self.url_override or self.identity.collector_url.rstrip("/")

    async def run(self) -> None:
        """Upload for ever (until cancelled), one batch at a time."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            while True:
                await self.wait_for_batch()
                batch = await self.buffer.read_batch(self.status.batch_limit, self.settings.max_bytes)
                if not batch:
                    continue
                try:
                    await self._deliver(session, batch)
                except _Restart:
                    continue
                self.status.state = "idle"

    async def wait_for_batch(self) -> None:
        """Return when a batch is due: full by count or bytes, or its oldest record `max_age` old."""
        while True:
            pending = self.buffer.pending
            if pending.depth >= self.settings.max_records or pending.bytes >= self.settings.max_bytes:
                return
            timeout: float | None = None
            if pending.depth:
                timeout = self.settings.max_age - (self._clock() - pending.oldest_taken_ms / 1000)
                if timeout <= 0:
                    return
                # A wall clock stepped backwards would make the oldest record look young for hours.
                timeout = min(timeout, self.settings.max_age)
            self.buffer.changed.clear()
            try:
                await asyncio.wait_for(self.buffer.changed.wait(), timeout)
            except TimeoutError:
                return

    async def _deliver(self, session: aiohttp.ClientSession, records: list[StoredRecord]) -> None:
        """Send `records` in order until each is acked or rejected, splitting on 413, 400 and timeouts."""
        why = ""
        try:
            answer = await self._post_retrying(session, records)
        except UploadError as exc:
            if not (exc.timed_out and len(records) > 1):
                raise
            # Too big for this uplink within the timeout: halve it, and keep later batches that small.
            self.status.batch_limit = max(1, len(records) // 2)
            answer, why = Split(str(exc)), "timed_out"
        if isinstance(answer, Ack):
            try:
                await self._acked(records, answer)
            finally:
                self.buffer.release()
            return
        self.buffer.release()
        if len(records) == 1:
            reason = answer.reason
            if not isinstance(answer, Isolate):
                reason = f"alone over the collector's size limit: {reason}"
            await self.buffer.reject(records[0].seq, reason)
            self.status.rejected += 1
            self.status.last_rejected = reason
            self.status.last_rejected_ms = int(self._clock() * 1000)
            event(log, "record_rejected", logging.ERROR, seq=records[0].seq, reason=reason)
            if self.on_rejected is not None:
                self.on_rejected(unpack_parked(records[0].body), reason)
            return
        self.status.splits += 1
        middle = len(records) // 2
        why = why or ("malformed" if isinstance(answer, Isolate) else "too_large")
        event(log, "batch_split", logging.WARNING, why=why, records=len(records), reason=answer.reason)
        await self._deliver(session, records[:middle])
        await self._deliver(session, records[middle:])

    async def _acked(self, records: list[StoredRecord], ack: Ack) -> None:
        answer = ack.answer
        first, last = records[0].seq, records[-1].seq
        stats = await self.buffer.stats()
        if answer.acked_seq >= stats.next_seq:
            moved = await self.buffer.rebase(answer.acked_seq)
            event(
                log,
                "seq_rebased",
                logging.WARNING,
                collector_high_water=answer.acked_seq,
                was_next=stats.next_seq,
                records=moved,
            )
            raise _Restart
        deleted = await self.buffer.ack(answer.acked_seq)
        limit = self.status.batch_limit
        if len(records) >= limit < self.settings.max_records and self._last_post_s < self.timeout / 4:
            # A full batch, quick enough that twice the records would still arrive well within the timeout.
            self.status.batch_limit = min(self.settings.max_records, self.status.batch_limit * 2)
        now_ms = int(self._clock() * 1000)
        self.status.last_success_ms = now_ms
        self.status.acked_seq = max(self.status.acked_seq, answer.acked_seq)
        self.status.uploaded_records += answer.accepted
        self.status.batches += 1
        self.status.last_error = ""
        event(
            log,
            "upload_ok",
            first=first,
            last=last,
            accepted=answer.accepted,
            duplicates=answer.duplicates,
            deleted=deleted,
        )
        if answer.acked_seq != last:
            # The collector acked more or less than this batch: what it covers is gone, the rest is
            # sent again in seq order from a fresh read.
            raise _Restart

    async def _post_retrying(self, session: aiohttp.ClientSession, records: list[StoredRecord]) -> Fate:
        def worth_retrying(error: BaseException) -> bool:
            # A timeout of a batch that can still be halved goes back to _deliver, which splits it.
            return isinstance(error, UploadError) and not (error.timed_out and len(records) > 1)

        retrying = AsyncRetrying(
            retry=retry_if_exception(worth_retrying),
            wait=self._wait,
            stop=stop_never,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post_once(session, records)
        raise AssertionError("tenacity stopped retrying although stop_never was given")

    def _wait(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, UploadError) and error.retry_after is not None:
            return min(error.retry_after, self.settings.backoff_max)
        return min(self.settings.backoff_max, float(self._backoff(retry_state)))

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.upcoming_sleep
        self.status.retries += 1
        if self.status.state != "re-enroll":
            self.status.state = "backing_off"
        self.status.next_attempt_ms = int((self._clock() + delay) * 1000)
        if isinstance(error, UploadError) and error.retry_after is not None:
            self.status.last_retry_after_s = error.retry_after
        event(
            log,
            "upload_retry",
            logging.WARNING,
            error=str(error),
            wait_s=round(delay, 3),
            attempt=retry_state.attempt_number,
        )

    async def _post_once(self, session: aiohttp.ClientSession, records: list[StoredRecord]) -> Fate:
        """One attempt, with the batch claimed in the buffer; released on failure, else by `_deliver` when handled."""
        first, last = records[0].seq, records[-1].seq
        if not await self.buffer.claim(first, last, len(records)):
            # The buffer overflowed since this batch was read and its gap event counts these records
            # as lost: sending them now would make that gap a lie. Read the batch again.
            event(log, "batch_overtaken_by_overflow", logging.WARNING, first=first, last=last)
            raise _Restart
        try:
            return await self._send(session, records)
        except BaseException:
            self.buffer.release()
            raise

    async def _send(self, session: aiohttp.ClientSession, records: list[StoredRecord]) -> Fate:
        if self._reload_identity:
            self._try_reload_identity()
        agent = self.identity.agent_id
        now = self._clock()
        body = encode_packed_records(agent, [r.body for r in records], records[0].seq, records[-1].seq, int(now * 1000))
        self.status.state = "sending" if self.status.state != "re-enroll" else "re-enroll"
        self.status.attempts += 1
        self.status.last_attempt_ms = int(now * 1000)
        self._in_flight_since = started = time.monotonic()
        try:
            reply = await send_signed(
                session, self.collector_url, "POST", INGEST_PATH, agent, self.key, body, content_type=CONTENT_TYPE,
                offset_s=self.status.clock_offset_s, timeout_s=self.timeout, clock=self._clock,
            )
        except CollectorUnreachable as exc:
            self._observe(started, 0)
            if exc.timed_out:
                raise self._failed(
                    f"no answer from the collector at {self.collector_url}{INGEST_PATH} within {self.timeout:g} s "
                    f"({len(records)} records, {len(body)} bytes)",
                    timed_out=True,
                ) from None
            raise self._failed(str(exc)) from None
        finally:
            self._in_flight_since = None
        self._observe(started, reply.status)
        self._report_server_time(reply)
        return self._act(interpret(reply.status, reply.headers, reply.raw, reply.sent), reply.status)

    def _act(self, action: Action, status: int) -> Fate:
        """Keep the status an answer changes; the batch's fate goes back to `_deliver`, a retry to tenacity."""
        if isinstance(action, Ack | Split | Isolate):
            if isinstance(action, Ack) and self.status.state == "re-enroll":
                self.status.state = "sending"
            return action
        if isinstance(action, FixClock):
            moved = abs(action.offset_s - self.status.clock_offset_s) > 1
            self.status.clock_offset_s = action.offset_s
            event(log, "clock_offset_corrected", logging.WARNING, offset_s=round(action.offset_s, 1))
            message = f"request clock off by {action.offset_s:+.0f} s; corrected"
            raise self._failed(message, status, 0.0 if moved else None)
        if isinstance(action, Reenroll):
            self.status.state = "re-enroll"
            self._reload_identity = True
            raise self._failed(
                f"the collector refused this agent ({action.reason}); it may be revoked or unknown: re-enroll with "
                "`footfall agent enroll --force`; readings stay buffered",
                status,
            )
        raise self._failed(action.reason, status, action.after_s)

    def stuck(self) -> str | None:
        """A watchdog probe: why the upload in flight looks hung (it outlived its timeout), or None."""
        since = self._in_flight_since
        if since is not None and time.monotonic() - since > self.timeout + STUCK_MARGIN_S:
            return f"an upload has been in flight for {time.monotonic() - since:.0f} s (timeout {self.timeout:.0f} s)"
        return None

    def _report_server_time(self, reply: Reply) -> None:
        if self._on_server_time is not None and reply.server_time is not None:
            self._on_server_time(reply.server_time, reply.sent, reply.received)

    def _observe(self, started: float, status: int) -> None:
        """Note how long the request took (for the adaptive batch size) and tell the metrics."""
        self._last_post_s = time.monotonic() - started
        if self.on_response is not None:
            self.on_response(self._last_post_s, status)

    def _failed(
        self, message: str, status: int = 0, retry_after: float | None = None, *, timed_out: bool = False
    ) -> UploadError:
        self.status.last_error = message
        self.status.last_error_ms = int(self._clock() * 1000)
        return UploadError(message, status=status, retry_after=retry_after, timed_out=timed_out)

    def _try_reload_identity(self) -> None:
        try:
            identity, key = load_identity(self.state_dir), load_key(self.state_dir)
        except IdentityError as exc:
            event(log, "identity_reload_failed", logging.WARNING, error=str(exc))
            return
        if identity.agent_id != self.identity.agent_id:
            event(log, "identity_reloaded", agent=identity.agent_id, was=self.identity.agent_id)
            self.status.state = "sending"
        self.identity, self.key = identity, key

