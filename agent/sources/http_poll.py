"""HTTP poll: the agent GETs a device's URL on its interval; each 200 body is one frame.

Conditional requests: when the device sent an `ETag` (or a `Last-Modified`), the next GET
carries `If-None-Match` (or `If-Modified-Since`), and a `304 Not Modified` is a poll with
nothing new: no frame, no work. The validators live in memory: after a restart the first poll
takes the whole body again, and the decoder drops the periods it already has.

Answers: 2xx -> a frame; 304 -> nothing new; 401/403 -> the credentials are wrong (degraded,
retried on the interval, said plainly); other 4xx/5xx -> degraded; a connection that fails ->
down, retried with backoff and jitter. Each source has its own task: a slow device never
delays another's poll.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from footfall.agent.config.transports import HttpPollOptions
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, FrameRefused, Intake, NotStored, SourceError, now_ms
from footfall.agent.sources.device import Device, DeviceTransport, options_of

from footfall import __version__
from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.http_poll")


@dataclass(slots=True, eq=False)
class Poller(Device[HttpPollOptions]):
    """One http_poll source and its conditional-request validators."""

    etag: str = ""
    last_modified: str = ""
    not_modified: int = 0

    @property
    def what(self) -> str:
        """The URL it polls."""
        return self.options.url

    def headers(self) -> dict[str, str]:
        """The request's headers: the configured ones, auth, and the validators."""
        out = {"User-Agent": f"footfall-agent/{__version__}", **{k: str(v) for k, v in self.options.headers.items()}}
        if self.options.token:
            out["Authorization"] = f"Bearer {self.options.token}"
        if self.options.conditional:
            if self.etag:
                out["If-None-Match"] = self.etag
            if self.last_modified:
                out["If-Modified-Since"] = self.last_modified
        return out


class HttpPollSource(DeviceTransport[Poller]):
    """Every http_poll source of the agent, one task each."""

    kind = "http-poll"
    logger = log

    def device(self, intake: Intake) -> Poller:
        """A poller for each source, with its validators."""
        options = options_of(intake, HttpPollOptions, "http_poll")
        return Poller(intake, options, Backoff.of(options))

    async def session(self, poller: Poller) -> None:
        """Poll on the interval until the device cannot be reached."""
        options = poller.options
        auth = aiohttp.BasicAuth(options.username, options.password) if options.username else None
        timeout = aiohttp.ClientTimeout(total=options.timeout)
        async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
            while True:
                await self.poll_once(session, poller)
                await asyncio.sleep(options.interval)

    async def poll_once(self, session: aiohttp.ClientSession, poller: Poller) -> bytes | None:
        """One GET; the body taken (or None). SourceError when the device cannot be reached."""
        intake, options, name = poller.intake, poller.options, poller.name
        try:
            async with session.get(options.url, headers=poller.headers(), allow_redirects=True) as response:
                body = await response.read()
                status = response.status
                etag = response.headers.get("ETag", "")
                modified = response.headers.get("Last-Modified", "")
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise SourceError(f"GET {options.url} failed: {exc or type(exc).__name__}") from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"GET {options.url} failed: {exc}") from None
        intake.health.up()
        if status == 304:
            poller.not_modified += 1
            return None
        if status in (401, 403):
            intake.health.failed(
                now_ms(), "receiving", f"{options.url} answered {status}: check token or username/password"
            )
            return None
        if not 200 <= status < 300:
            intake.health.failed(now_ms(), "receiving", f"{options.url} answered HTTP {status}")
            self.repeated("http_poll_status", key=name, source=name, url=options.url, status=status)
            return None
        frame = Frame(name, body, received_ms=now_ms(), meta={"url": options.url, "status": str(status)})
        try:
            await intake(frame)
        except FrameRefused:
            # Counted as an error and logged (rate-limited) by the intake; validators are not kept,
            # so the body is read again and the device's fix is seen at once.
            intake.health.garbage += 1
            return None
        except NotStored:
            return None  # not stored: validators not kept, the next poll takes the body again
        poller.etag, poller.last_modified = etag, modified
        event(log, "http_poll_taken", logging.DEBUG, source=name, bytes=len(body))
        return body
