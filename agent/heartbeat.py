"""The heartbeat (protocol/SPEC.md section 9): the agent's status to the collector, the fleet's wishes back.

Its own task beside the data path, with its own HTTP session: every `[heartbeat] interval` it
sends the buffer's depth and oldest reading, upload state, each source's health, its clock
offset and NTP state, free disk and the configuration it runs. A heartbeat the uplink cannot
carry is skipped (logged once per outage), never retried in a loop, and nothing in the data
path ever waits for it.

From the answer it:
- measures the clock offset (the collector's time against the midpoint of send and receive);
- rotates the key when asked, or finishes a rotation an earlier crash interrupted
  (agent/rotation.py), then hands the new key to the uploader;
- fetches the configuration the fleet wants when its version is neither the one running nor
  the last one refused, checks it (agent/fleet_config.py; a new collector URL must answer a
  heartbeat first), applies it in-process (`Pipeline.reconfigure`: sources and uploads
  restart, the buffer stays open and untouched) and reports the outcome. A refused version
  changes nothing and is reported with its reasons.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from footfall.agent import fleet_config, rotation
from footfall.agent.collector_client import CollectorUnreachable, Reply, call
from footfall.agent.identity import IdentityError, load_identity, load_key
from footfall.agent.sources.base import SourceHealth
from footfall.agent.timesync import kernel_synchronized
from footfall.protocol import fleet as proto
from footfall.protocol.errors import ProtocolError

from footfall import __version__
from footfall.logs import event

if TYPE_CHECKING:
    from footfall.agent.pipeline import Pipeline

log = logging.getLogger("footfall.agent.heartbeat")


@dataclass(slots=True)
class HeartbeatStatus:
    """What `status` shows about the heartbeat."""

    state: str = "starting"  # starting, ok, failing, refused
    last_success_ms: int = 0
    last_attempt_ms: int = 0
    last_error: str = ""
    beats: int = 0
    skipped: int = 0
    clock_offset_s: float | None = None
    clock_skew_s: float | None = None
    desired_version: int = 0
    key_rotated_ms: int = 0
    rotation_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class Heartbeat:
    """The heartbeat task of one pipeline: `await run()` until cancelled; `await beat()` once."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.status = HeartbeatStatus()
        self._clock = pipeline.clock
        self._session: aiohttp.ClientSession | None = None

    @property
    def interval(self) -> float:
        """Seconds between heartbeats (the running configuration's, so a pushed change takes effect)."""
        return self.pipeline.config.heartbeat.interval

    async def run(self) -> None:
        """Beat every interval until cancelled; the first one at once."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                while True:
                    started = time.monotonic()
                    await self.beat()
                    await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
            finally:
                self._session = None

    async def beat(self) -> None:
        """One heartbeat and whatever its answer asks for; never raises but CancelledError."""
        try:
            await self._beat()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the heartbeat must never take the data path down: log the bug and go on
            log.exception("heartbeat_failed")
            self.status.state, self.status.last_error = "failing", f"{type(exc).__name__}: {exc}"

    async def _beat(self) -> None:
        pipeline = self.pipeline
        if pipeline.identity is None or pipeline.key is None:
            self.status.state = "off"
            return
        now = self._clock()
        self.status.last_attempt_ms = int(now * 1000)
        body = await self.build()
        try:
            reply = await self._send(pipeline.key, proto.HEARTBEAT_PATH, body.as_json())
        except CollectorUnreachable as exc:
            self._skipped(str(exc))
            return
        if not reply.ok:
            self._refused(reply)
            return
        try:
            answer = proto.decode_heartbeat_answer(reply.raw)
        except ProtocolError as exc:
            self._skipped(f"the collector's heartbeat answer is not understood: {exc}")
            return
        if self.status.state != "ok":
            event(log, "heartbeat_ok", previous=self.status.state)
        self.status.state = "ok"
        self.status.beats += 1
        self.status.last_success_ms = int(reply.received * 1000)
        self.status.last_error = ""
        self.status.clock_offset_s = round(
            proto.offset_from_exchange(reply.sent, reply.received, answer.server_time_ms / 1000), 3
        )
        self.status.clock_skew_s = answer.clock_skew_s
        # The collector's clock, to the millisecond, is how the agent clock confirms itself (agent/clock.py).
        pipeline.agent_clock.observe_collector(
            answer.server_time_ms / 1000, reply.sent, reply.received, resolution_s=0.001
        )
        self.status.desired_version = answer.config.version if answer.config else 0
        if answer.rotate_key or rotation.pending(pipeline.state_dir):
            await self._rotate()
        state = pipeline.fleet_state
        if answer.config and answer.config.version not in (state.applied_version, state.rejected_version):
            await self._apply(answer.config)

    async def build(self) -> proto.Heartbeat:
        """This agent's heartbeat body, from the running pipeline."""
        pipeline = self.pipeline
        stats = await pipeline.buffer.stats()
        upload = pipeline.uploader.status if pipeline.uploader else None
        state = pipeline.fleet_state
        try:
            disk_free = shutil.disk_usage(pipeline.state_dir).free
        except OSError:
            disk_free = 0
        return proto.Heartbeat(
            sent_at_ms=int(self._clock() * 1000),
            version=__version__,
            hostname=socket.gethostname(),
            started_at_ms=pipeline.started_ms,
            buffer=proto.BufferState(
                depth=stats.depth, bytes=stats.bytes, max_size=stats.max_size, oldest_taken_ms=stats.oldest_taken_ms,
                next_seq=stats.next_seq, acked_seq=stats.acked_seq, dropped_records=stats.dropped_records,
                rejected=stats.rejected, rejected_parked=stats.rejected_parked, rejected_reason=stats.rejected_reason,
            ),
            upload=proto.UploadInfo(
                state=upload.state if upload else "off",
                last_success_ms=upload.last_success_ms if upload else 0,
                last_error=upload.last_error if upload else "",
                uploaded_records=upload.uploaded_records if upload else 0,
            ),
            sources=tuple(_source_info(intake.health) for intake in pipeline.intakes),
            clock=proto.ClockInfo(
                offset_s=self.status.clock_offset_s or 0.0, synchronized=await asyncio.to_thread(kernel_synchronized)
            ),
            disk_free_bytes=disk_free,
            config=proto.ConfigInfo(state.applied_version, state.rejected_version, state.rejected_error),
        )

    async def _send(
        self, key: Ed25519PrivateKey, path: str, payload: dict[str, Any] | None, *, method: str = "POST",
        url: str | None = None,
    ) -> Reply:
        """One signed request; a `timestamp_out_of_window` corrects the request clock and is tried once more."""
        pipeline = self.pipeline
        assert pipeline.identity is not None and self._session is not None
        target = url or pipeline.collector_url
        timeout = min(pipeline.config.collector.timeout, max(self.interval, 5.0))
        for _ in range(2):
            reply = await call(
                self._session, target, method, path, pipeline.identity.agent_id, key, payload,
                offset_s=pipeline.request_offset_s, limit_s=timeout, clock=self._clock,
            )
            if reply.status == 401 and reply.code == "timestamp_out_of_window" and reply.server_time is not None:
                pipeline.request_offset_s = reply.server_time - reply.received
                event(log, "clock_offset_corrected", logging.WARNING, offset_s=round(pipeline.request_offset_s, 1))
                continue
            return reply
        return reply

    def _skipped(self, reason: str) -> None:
        self.status.skipped += 1
        if self.status.state != "failing":
            event(
                log, "heartbeat_skipped", logging.WARNING, reason=reason, hint="uploads go on; retrying next interval"
            )
        self.status.state, self.status.last_error = "failing", reason

    def _refused(self, reply: Reply) -> None:
        reason = f"the collector answered {reply.status} {reply.code}: {reply.reason}".strip()
        if reply.status == 401:
            self._reload_identity()
            self.status.state = "refused"
        else:
            self.status.state = "failing"
        if self.status.last_error != reason:
            event(log, "heartbeat_refused", logging.WARNING, status=reply.status, code=reply.code, reason=reply.reason)
        self.status.last_error = reason
        self.status.skipped += 1

    def _reload_identity(self) -> None:
        """After a 401, pick up a re-enrollment done meanwhile (`footfall agent enroll --force`)."""
        pipeline = self.pipeline
        try:
            identity, key = load_identity(pipeline.state_dir), load_key(pipeline.state_dir)
        except IdentityError as exc:
            event(log, "identity_reload_failed", logging.WARNING, error=str(exc))
            return
        if pipeline.identity is None or identity.agent_id != pipeline.identity.agent_id:
            pipeline.use_identity(identity, key)

    async def _rotate(self) -> None:
        pipeline = self.pipeline
        assert pipeline.identity is not None and pipeline.key is not None

        async def send(key: Ed25519PrivateKey, path: str, payload: dict[str, str]) -> Reply:
            return await self._send(key, path, payload)

        try:
            new_key = await rotation.rotate(pipeline.state_dir, pipeline.identity.agent_id, pipeline.key, send)
        except (rotation.RotationError, CollectorUnreachable, IdentityError, OSError) as exc:
            self.status.rotation_error = str(exc)
            event(log, "key_rotation_failed", logging.WARNING, error=str(exc), hint="tried again at the next heartbeat")
            return
        pipeline.use_identity(pipeline.identity, new_key)
        self.status.key_rotated_ms = int(self._clock() * 1000)
        self.status.rotation_error = ""

    async def _apply(self, ref: proto.ConfigRef) -> None:
        """Fetch, check, apply and report one configuration version."""
        pipeline = self.pipeline
        assert pipeline.key is not None
        try:
            reply = await self._send(pipeline.key, proto.config_path(ref.version), None, method="GET")
        except CollectorUnreachable as exc:
            event(log, "config_fetch_failed", logging.WARNING, version=ref.version, error=str(exc))
            return
        if not reply.ok:
            event(log, "config_fetch_refused", logging.WARNING, version=ref.version, status=reply.status,
                  reason=reply.reason)
            return
        try:
            document = proto.decode_config_document(reply.raw)
            if document.version != ref.version:
                raise fleet_config.ConfigRefused(f"asked for version {ref.version}, got {document.version}")
            config = fleet_config.validate(document.config, pipeline.local_config)
            await self._check_new_collector(config)
            await pipeline.reconfigure(config)
        except (ProtocolError, fleet_config.ConfigRefused) as exc:
            reason = str(exc)
            pipeline.fleet_state = fleet_config.store_rejected(pipeline.state_dir, ref.version, reason,
                                                               pipeline.fleet_state)
            event(log, "config_rejected", logging.ERROR, version=ref.version, reason=reason)
            await self._report(ref.version, proto.ConfigReport("rejected", reason))
            return
        pipeline.fleet_state = fleet_config.store_applied(
            pipeline.state_dir, ref.version, document.config, pipeline.fleet_state, int(self._clock() * 1000)
        )
        event(log, "config_applied", version=ref.version)
        await self._report(ref.version, proto.ConfigReport("applied"))

    async def _check_new_collector(self, config: Any) -> None:
        """A configuration that moves the agent to another collector must find it answering first."""
        pipeline = self.pipeline
        new_url = config.collector.url or (pipeline.identity.collector_url if pipeline.identity else "")
        if not new_url or new_url.rstrip("/") == pipeline.collector_url.rstrip("/"):
            return
        assert pipeline.key is not None
        body = (await self.build()).as_json()
        try:
            reply = await self._send(pipeline.key, proto.HEARTBEAT_PATH, body, url=new_url)
        except CollectorUnreachable as exc:
            raise fleet_config.ConfigRefused(f"collector.url: {exc}; keeping {pipeline.collector_url}") from None
        if not reply.ok:
            raise fleet_config.ConfigRefused(
                f"collector.url: {new_url} refused this agent's heartbeat ({reply.status} {reply.code}): "
                f"{reply.reason}; keeping {pipeline.collector_url}"
            )

    async def _report(self, version: int, report: proto.ConfigReport) -> None:
        pipeline = self.pipeline
        assert pipeline.key is not None
        try:
            reply = await self._send(pipeline.key, proto.config_report_path(version), report.as_json())
        except CollectorUnreachable as exc:
            event(log, "config_report_failed", logging.WARNING, version=version, error=str(exc),
                  hint="the next heartbeat carries the same facts")
            return
        if not reply.ok:
            event(log, "config_report_refused", logging.WARNING, version=version, status=reply.status,
                  reason=reply.reason)


def _source_info(h: SourceHealth) -> proto.SourceInfo:
    """A source as the fleet sees it; one whose every record the collector refused is not ok, whatever it receives."""
    state, last_error = h.state, h.last_error
    if h.all_refused:
        state = "degraded" if state == "ok" else state
        last_error = f"the collector refused every record of it ({h.rejected}): {h.last_rejected}"
    return proto.SourceInfo(
        name=h.name, transport=h.transport, adapter=h.adapter, state=state,
        last_reading_ms=h.last_reading_ms, errors=h.errors, last_error=last_error,
    )
