"""MQTT: subscribe to topic filters on a broker; one frame per message, acknowledged once committed.

One connection per source (its own client id and persistent session), kept by `keep_running`:
connect, subscribe, take messages; when the broker goes away, reconnect with backoff and
jitter and subscribe again. Messages are taken concurrently (each waits for its group commit)
but acknowledged strictly in arrival order, each only after its readings are committed: a
message is *taken* when its PUBACK leaves, never before (see mqtt_client.py for why a crash
then loses nothing and repeats nothing that counts). A message the adapter refuses is garbage:
counted, logged (rate-limited), and acknowledged, since sending it again cannot help.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from footfall.agent.buffer import BufferError
from footfall.agent.config.sections import AgentConfig
from footfall.agent.config.transports import MqttOptions
from footfall.agent.decode.errors import DecodeError
from footfall.agent.intake import SourceIntake
from footfall.agent.sources.base import Frame, SourceError
from footfall.agent.sources.mqtt_client import Message, MqttClient
from footfall.agent.sources.supervise import Backoff, RateLimitedLog, keep_running, now_ms, stop_tasks

from footfall.logs import event

log = logging.getLogger("footfall.agent.sources.mqtt")
# Messages being committed at once per source; the broker's own in-flight window is usually smaller.
MAX_IN_FLIGHT = 100


def default_client_id(source: str) -> str:
    """A stable client id (the persistent session is keyed by it): footfall-<host>-<source>."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40]
    return f"footfall-{host}-{re.sub(r'[^A-Za-z0-9_-]', '-', source)}"


def make_client(name: str, options: MqttOptions) -> MqttClient:
    """The client for one source's options."""
    return MqttClient(
        host=options.host,
        port=options.port,
        topics=options.topics,
        qos=options.qos,
        client_id=options.client_id or default_client_id(name),
        clean_session=options.clean_session,
        username=options.username,
        password=options.password,
        tls=options.tls,
        ca_file=options.ca_file,
        cert_file=options.cert_file,
        key_file=options.key_file,
        keepalive=options.keepalive,
    )


@dataclass(slots=True)
class Subscription:
    """One mqtt source."""

    intake: SourceIntake
    options: MqttOptions
    backoff: Backoff
    task: asyncio.Task[None] | None = None
    last_ms: int = 0

    def stamp(self) -> int:
        """A receipt time strictly after the previous message's."""
        self.last_ms = max(now_ms(), self.last_ms + 1)
        return self.last_ms


class MqttSource:
    """Every mqtt source of the agent."""

    def __init__(self, intakes: Sequence[SourceIntake]) -> None:
        self.subscriptions: list[Subscription] = []
        for intake in intakes:
            options = intake.source.options
            if not isinstance(options, MqttOptions):
                raise TypeError(f"source {intake.source.name!r} is not an mqtt source")
            self.subscriptions.append(Subscription(intake, options, Backoff.of(options)))
        self._log = RateLimitedLog(log, every=60.0)

    @classmethod
    def from_config(cls, config: AgentConfig, intakes: Sequence[SourceIntake]) -> MqttSource:
        """The mqtt transport for these sources."""
        return cls(intakes)

    async def start(self) -> None:
        """One task per source; a broker that is down now is retried, not fatal."""
        for sub in self.subscriptions:
            name = sub.intake.source.name
            sub.task = asyncio.create_task(
                keep_running(
                    name,
                    functools.partial(self._session, sub),
                    [sub.intake.health],
                    sub.backoff,
                    what=f"MQTT broker {sub.options.host}:{sub.options.port}",
                ),
                name=f"footfall-mqtt:{name}",
            )

    async def stop(self) -> None:
        """Disconnect; messages not yet acknowledged stay with the broker for next time."""
        tasks = [s.task for s in self.subscriptions if s.task is not None]
        await stop_tasks(tasks)
        for sub in self.subscriptions:
            sub.task = None

    async def _session(self, sub: Subscription) -> None:
        name = sub.intake.source.name
        client = make_client(name, sub.options)
        pending: collections.deque[tuple[Message, asyncio.Task[bool]]] = collections.deque()
        room = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            async with client:
                sub.intake.health.up()
                event(
                    log,
                    "mqtt_connected",
                    source=name,
                    broker=f"{sub.options.host}:{sub.options.port}",
                    topics=",".join(sub.options.topics),
                    session_present=client.session_present,
                )
                async for message in client.messages:
                    await room.acquire()
                    task = asyncio.create_task(self._take(sub, message), name=f"footfall-mqtt-take:{name}")
                    pending.append((message, task))
                    task.add_done_callback(lambda _t: self._ack_ready(client, pending, room))
        finally:
            for _, task in pending:
                task.cancel()
            for _, task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _ack_ready(
        self,
        client: MqttClient,
        pending: collections.deque[tuple[Message, asyncio.Task[bool]]],
        room: asyncio.Semaphore,
    ) -> None:
        """Acknowledge every finished message at the head of the queue (arrival order)."""
        while pending and pending[0][1].done():
            message, task = pending.popleft()
            room.release()
            if task.cancelled() or task.exception() is not None or not task.result():
                continue  # not stored: no PUBACK, the broker sends it again after a reconnect
            with contextlib.suppress(OSError, ValueError):
                client.ack(message)

    async def _take(self, sub: Subscription, message: Message) -> bool:
        """Commit one message's readings; True when it may be acknowledged."""
        intake = sub.intake
        name = intake.source.name
        frame = Frame(
            name,
            message.payload,
            received_ms=sub.stamp(),
            meta={"topic": message.topic, "duplicate": str(message.duplicate).lower()},
        )
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await intake(frame)
                return True
            except DecodeError as exc:
                intake.health.garbage += 1
                self._log("mqtt_garbage", key=name, source=name, topic=message.topic, error=str(exc))
                return True
            except BufferError:
                await asyncio.sleep(backoff.next())
            except SourceError:
                return False
