"""A scripted collector for the agent's tests: real HTTP on 127.0.0.1, real protocol checks.

It speaks SPEC.md sections 5 and 6 (enrollment, signed ingest with the timestamp window and
the seq high-water mark) with the protocol package, so the agent is tested against the
protocol, not against itself. Tests script faults in front of the normal path: queued
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
from footfall.protocol.envelope import Batch, decode_body
from footfall.protocol.errors import AuthError, ProtocolError
from footfall.protocol.records import Record


@dataclass
class Answer:
    """A scripted answer to the next ingest request."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


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
            batch = decode_body(body)
            seqs = [r.seq for r in batch.records]
        except ProtocolError:
            batch, seqs = None, []
        if self.on_ingest is not None:
            self.on_ingest(seqs)
        if self.slow_per_record:
            await asyncio.sleep(self.slow_per_record * len(seqs))
        if self.script:
            answer = self.script.pop(0)
            self.seen.append(Seen(answer.status, seqs))
            return self._answer(answer.status, answer.body, answer.headers)
        response = self._check(request, body, batch)
        self.seen.append(Seen(response.status, seqs))
        return response

    def _check(self, request: web.Request, body: bytes, batch: Batch | None) -> web.Response:
        try:
            signed = signing.read_headers(request.headers)
            signing.check_timestamp(signed.timestamp, self.now())
            if signed.agent in self.revoked:
                raise AuthError("agent revoked", code="revoked_agent")
            if signed.agent not in self.keys:
                raise AuthError("unknown agent", code="unknown_agent")
            signing.verify_request(self.keys[signed.agent], "POST", request.path, signed, body)
            batch = decode_body(body)
        except ProtocolError as exc:
            return self._answer(exc.status, {"error": exc.code, "message": exc.message})
        if batch.agent != signed.agent:
            return self._answer(400, {"error": "agent_mismatch", "message": "envelope agent differs"})
        if self.max_records and len(batch.records) > self.max_records:
            return self._answer(413, {"error": "batch_too_large", "message": f"over {self.max_records} records"})
        bad = [r.seq for r in batch.records if r.seq in self.poison]
        if bad:
            return self._answer(400, {"error": "malformed_batch", "message": f"record seq {bad[0]} is poisoned"})
        mark = self.high_water.get(batch.agent, 0)
        fresh = [r for r in batch.records if r.seq > mark]
        self.accepted.extend(fresh)
        self.high_water[batch.agent] = max(mark, batch.seq_last)
        return self._answer(
            200,
            {
                "accepted": len(fresh),
                "duplicates": len(batch.records) - len(fresh),
                "acked_seq": self.high_water[batch.agent],
            },
        )
