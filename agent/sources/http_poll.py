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
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from footfall.agent.buffer import BufferError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.config.transports import HttpPollOptions
from footfall.agent.decode.errors import DecodeError
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, SourceError
from footfall.agent.sources.supervise import Backoff, RateLimitedLog, keep_running, now_ms, stop_tasks

from footfall import __version__
from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.http_poll")


@dataclass(slots=True)
class Poller:
    """One http_poll source and its conditional-request validators."""

    intake: SourceIntake
    options: HttpPollOptions
    backoff: Backoff
    etag: str = ""
    last_modified: str = ""
    not_modified: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

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


class HttpPollSource:
    """Every http_poll source of the agent, one task each."""

    def __init__(self, intakes: Sequence[SourceIntake]) -> None:
        self.pollers: list[Poller] = []
        for intake in intakes:
            options = intake.source.options
            if not isinstance(options, HttpPollOptions):
                raise TypeError(f"source {intake.source.name!r} is not an http_poll source")
            self.pollers.append(Poller(intake, options, Backoff.of(options)))
        self._log = RateLimitedLog(log, every=60.0)

    @classmethod
    def from_config(cls, config: AgentConfig, intakes: Sequence[SourceIntake]) -> HttpPollSource:
        """The http_poll transport for these sources."""
        return cls(intakes)

    async def start(self) -> None:
        """One task per source."""
        for poller in self.pollers:
            name = poller.intake.source.name
            poller.task = asyncio.create_task(
                keep_running(
                    name,
                    functools.partial(self._session, poller),
                    [poller.intake.health],
                    poller.backoff,
                    what=poller.options.url,
                ),
                name=f"footfall-http-poll:{name}",
            )

    async def stop(self) -> None:
        """Stop polling; a body being committed finishes first."""
        tasks = [p.task for p in self.pollers if p.task is not None]
        await stop_tasks(tasks)
        for poller in self.pollers:
            poller.task = None

    async def _session(self, poller: Poller) -> None:
        options = poller.options
        auth = aiohttp.BasicAuth(options.username, options.password) if options.username else None
        timeout = aiohttp.ClientTimeout(total=options.timeout)
        async with aiohttp.ClientSession(timeout=timeout, auth=auth) as session:
            while True:
                await self.poll_once(session, poller)
                await asyncio.sleep(options.interval)

    async def poll_once(self, session: aiohttp.ClientSession, poller: Poller) -> bytes | None:
        """One GET; the body taken (or None). SourceError when the device cannot be reached."""
        intake, options = poller.intake, poller.options
        name = intake.source.name
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
            self._log("http_poll_status", key=name, source=name, url=options.url, status=status)
            return None
        frame = Frame(name, body, received_ms=now_ms(), meta={"url": options.url, "status": str(status)})
        try:
            await intake(frame)
        except DecodeError:
            # Counted as an error and logged (rate-limited) by the intake; validators are not kept,
            # so the body is read again and the device's fix is seen at once.
            intake.health.garbage += 1
            return None
        except BufferError:
            return None  # not stored: validators not kept, the next poll takes the body again
        poller.etag, poller.last_modified = etag, modified
        event(log, "http_poll_taken", logging.DEBUG, source=name, bytes=len(body))
        return body
