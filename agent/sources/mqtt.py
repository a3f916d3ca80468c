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
import logging
import re
import socket
from dataclasses import dataclass

from footfall.agent.config.transports import MqttOptions
from footfall.agent.sources.backoff import Backoff
from footfall.agent.sources.base import Frame, FrameRefused, Intake, SourceError
from footfall.agent.sources.device import Device, DeviceTransport, options_of
from footfall.agent.sources.mqtt_client import Message, MqttClient

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


@dataclass(slots=True, eq=False)
class Subscription(Device[MqttOptions]):
    """One mqtt source."""

    @property
    def what(self) -> str:
        """The broker."""
        return f"MQTT broker {self.options.host}:{self.options.port}"


class MqttSource(DeviceTransport[Subscription]):
    """Every mqtt source of the agent, one connection each."""

    kind = "mqtt"
    logger = log

    def device(self, intake: Intake) -> Subscription:
        """A subscription of its own for each source (its client id, its persistent session)."""
        options = options_of(intake, MqttOptions, "mqtt")
        return Subscription(intake, options, Backoff.of(options))

    async def session(self, sub: Subscription) -> None:
        """Connect, subscribe, take messages until the broker goes away."""
        name = sub.name
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
        frame = Frame(
            sub.name,
            message.payload,
            received_ms=sub.stamp(),
            meta={"topic": message.topic, "duplicate": str(message.duplicate).lower()},
        )
        try:
            await sub.deliver(frame)
        except FrameRefused as exc:
            sub.intake.health.garbage += 1
            self.repeated("mqtt_garbage", key=sub.name, source=sub.name, topic=message.topic, error=str(exc))
        except SourceError:
            return False
        return True
