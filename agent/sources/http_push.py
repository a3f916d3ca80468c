"""HTTP push: devices POST their readings to the agent. One aiohttp server, one route per source.

At-least-once from the device's side: a device gets 200 only after its readings are committed
to the buffer (so it may forget them), 400 with a JSON reason when the body does not match
the adapter profile (nothing was written; resending the same body will not help), 503 with
Retry-After when the buffer could not commit (resend later), 413 over `[http_push] max_body`,
401 when the source has a token and the request does not carry it, or when its adapter checks
webhook signatures and this one does not match the source's `secret` (nothing stored).

The 200 body says what happened: `{"accepted": n, "duplicates": d, "records": r}` (readings
taken, readings dropped as resends, records written), plus `"ignored": i` when the adapter
left items out (a payment not completed, another event type: see the profile's `[where]`).

Each frame's meta carries the request's full `url`, and every header as `header:<lower-case
name>`, for the adapters that check a signature (decode/signature.py). Meta is never logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from footfall.agent.config.reader import split_listen
from footfall.agent.config.sections import AgentConfig, HttpPushSection
from footfall.agent.config.transports import HttpPushOptions
from footfall.agent.sources.base import (
    HEADER_PREFIX,
    Frame,
    FrameRefused,
    Intake,
    NotAuthentic,
    NotStored,
    SourceError,
    Taken,
)
from footfall.agent.sources.device import options_of

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.http_push")
RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class PushRoute:
    """One http_push source: its path, optional token, and where its frames go."""

    path: str
    token: str
    intake: Intake


class HttpPushServer:
    """The shared HTTP server of every http_push source."""

    def __init__(
        self, section: HttpPushSection, routes: Sequence[PushRoute], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.section = section
        self.routes = list(routes)
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self.port = 0

    @classmethod
    def from_config(cls, config: AgentConfig, intakes: Sequence[Intake]) -> HttpPushServer:
        """The server for `intakes` (the http_push sources), configured by `[http_push]`."""
        routes = []
        for intake in intakes:
            options = options_of(intake, HttpPushOptions, "http_push")
            routes.append(PushRoute(options.path, options.token, intake))
        return cls(config.http_push, routes)

    async def start(self) -> None:
        """Bind `[http_push] listen` and serve every route; SourceError if the address is unusable."""
        app = web.Application(client_max_size=self.section.max_body)
        for route in self.routes:
            app.router.add_post(route.path, self._handler(route))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_listen(self.section.listen)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            for route in self.routes:
                route.intake.health.failed(
                    self._now_ms(), "receiving", f"cannot listen on {self.section.listen}: {exc}", down=True
                )
            raise SourceError(
                f"http_push cannot listen on {self.section.listen}: {exc.strerror or exc}; "
                "change [http_push] listen or stop what uses that port"
            ) from exc
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        event(log, "http_push_listening", listen=f"{host}:{self.port}", routes=len(self.routes))

    async def stop(self) -> None:
        """Stop accepting; requests in progress finish (their commits are awaited)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _handler(self, route: PushRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        intake = route.intake
        name = intake.name

        async def handle(request: web.Request) -> web.Response:
            if route.token and not bearer_matches(request.headers.get("Authorization", ""), route.token):
                intake.health.failed(
                    self._now_ms(), "receiving", f"request from {request.remote} without the source's token"
                )
                return _error(401, "unauthorized", "this source needs `Authorization: Bearer <token>` as configured")
            try:
                payload = await request.read()
            except web.HTTPRequestEntityTooLarge:
                intake.health.failed(self._now_ms(), "receiving", f"body over {self.section.max_body} bytes")
                return _error(
                    413, "too_large", f"the body is over {self.section.max_body} bytes; send fewer readings per request"
                )
            frame = Frame(
                source=name,
                payload=payload,
                received_ms=self._now_ms(),
                meta={
                    "path": request.path,
                    "content_type": request.content_type,
                    "remote": request.remote or "",
                    "url": str(request.url),
                    **{HEADER_PREFIX + name.lower(): value for name, value in request.headers.items()},
                },
            )
            try:
                result: Taken = await intake(frame)
            except NotAuthentic as exc:
                return _error(401, "bad_signature", f"{exc} (adapter {intake.adapter}); nothing was stored")
            except FrameRefused as exc:
                return _error(400, "malformed", f"{exc} (adapter {intake.adapter}); nothing was stored")
            except NotStored as exc:
                event(log, "push_not_stored", logging.ERROR, source=name, error=str(exc))
                return _error(
                    503,
                    "unavailable",
                    "the agent could not store the readings; send them again",
                    retry_after=RETRY_AFTER_S,
                )
            answer = {"accepted": result.accepted, "duplicates": result.duplicates, "records": result.records}
            if result.ignored:
                answer["ignored"] = result.ignored
            return web.json_response(answer)

        return handle


def bearer_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>`, compared in constant time.

    aiohttp hands over header bytes that are not UTF-8 as surrogate escapes: they are compared
    as the bytes the device sent (and never match), rather than failing to encode.
    """
    return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode())


def _error(status: int, code: str, message: str, *, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)
