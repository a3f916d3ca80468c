"""A scripted collector for the agent's tests: real HTTP on 127.0.0.1, real protocol checks.

It speaks SPEC.md sections 5 and 6 (enrollment, signed ingest with the timestamp window and
the seq high-water mark) with the protocol package: the ingest checks are the collector's own,
in its order (`protocol.ingest.open_signed_batch`), and so is the answer (`IngestAnswer`), so
the agent is tested against the protocol, not against itself. Tests script faults in front of the normal path: queued
answers (413, 429 with Retry-After, 503, 500, ...), poisoned seqs answered 400, a size limit
answered 413, big batches answered slowly, a skewed clock, revoked agents. It is a test peer, not a mock: it decodes and
verifies every request it gets.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from footfall.protocol import signing
from footfall.protocol.answers import ErrorAnswer, IngestAnswer
from footfall.protocol.envelope import decode_body
from footfall.protocol.errors import AuthError, ProtocolError
from footfall.protocol.ingest import open_signed_batch
from footfall.protocol.records import Record


@dataclass
class Answer:
    """A scripted answer to the next ingest request."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Bytes sent as they are instead of `body` (a proxy's page, say).
    raw: bytes | None = None


@dataclass
class Seen:
    """One ingest request as the peer saw it."""

    status: int
    seqs: list[int]


@dataclass
class PeerCollector:
    """The peer; `await start()`, use `url`, `await stop()`."""

    tokens: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    script: list[Answer] = field(default_factory=list)
    poison: set[int] = field(default_factory=set)
    max_records: int = 0
    clock_offset: float = 0.0
    revoked: set[str] = field(default_factory=set)
    # Seconds each record of a batch adds before the answer (0: none): a slow uplink, slower for bigger batches.
    slow_per_record: float = 0.0
    on_ingest: Callable[[list[int]], None] | None = None
    high_water: dict[str, int] = field(default_factory=dict)
    accepted: list[Record] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    enrolled: int = 0
    health_checks: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/agents/enroll", self._enroll)
        app.router.add_post("/v1/ingest", self._ingest)
        app.router.add_get("/v1/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def now(self) -> float:
        """The peer's clock."""
        return time.time() + self.clock_offset

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        out = {signing.HEADER_SERVER_TIME: str(int(self.now())), **(headers or {})}
        return web.json_response(body, status=status, headers=out)

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        return self._answer(200, {"status": "ok"})

    async def _enroll(self, request: web.Request) -> web.Response:
        body = await request.json()
        token = body.get("token")
        if token not in self.tokens:
            return self._answer(401, {"error": "bad_token", "message": "unknown token"})
        public = base64.b64decode(body["public_key"])
        if public in self.keys.values():
            return self._answer(409, {"error": "key_exists", "message": "public key already enrolled"})
        self.enrolled += 1
        agent_id = f"agt_test{self.enrolled}"
        self.keys[agent_id] = public
        org, site, zone = self.tokens[token]
        return self._answer(201, {"agent_id": agent_id, "organization": org, "site": site, "timezone": zone})

    async def _ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            seqs = [r.seq for r in decode_body(body).records]
        except ProtocolError:
            seqs = []
        if self.on_ingest is not None:
            self.on_ingest(seqs)
        if self.slow_per_record:
            await asyncio.sleep(self.slow_per_record * len(seqs))
        if self.script:
            answer = self.script.pop(0)
            self.seen.append(Seen(answer.status, seqs))
            if answer.raw is not None:
                return web.Response(status=answer.status, body=answer.raw, headers=answer.headers)
            return self._answer(answer.status, answer.body, answer.headers)
        response = self._check(request, body)
        self.seen.append(Seen(response.status, seqs))
        return response

    def _public_key(self, agent: str) -> bytes:
        if agent in self.revoked:
            raise AuthError("agent revoked", code="revoked_agent")
        if agent not in self.keys:
            raise AuthError("unknown agent", code="unknown_agent")
        return self.keys[agent]

    def _check(self, request: web.Request, body: bytes) -> web.Response:
        try:
            batch = open_signed_batch(request.headers, request.method, request.path, body, self._public_key,
                                      self.now()).batch
        except ProtocolError as exc:
            return self._answer(exc.status, ErrorAnswer(exc.code, exc.message).as_json())
        if self.max_records and len(batch.records) > self.max_records:
            return self._answer(413, ErrorAnswer("batch_too_large", f"over {self.max_records} records").as_json())
        bad = [r.seq for r in batch.records if r.seq in self.poison]
        if bad:
            return self._answer(400, ErrorAnswer("malformed_batch", f"record seq {bad[0]} is poisoned").as_json())
        mark = self.high_water.get(batch.agent, 0)
        fresh = [r for r in batch.records if r.seq > mark]
        self.accepted.extend(fresh)
        self.high_water[batch.agent] = max(mark, batch.seq_last)
        answer = IngestAnswer(len(fresh), len(batch.records) - len(fresh), self.high_water[batch.agent])
        return self._answer(200, answer.as_json())
