"""The one module that imports paho-mqtt: its callbacks become `async for message in client.messages`.

After aiomqtt (empicano/aiomqtt, `client.py`): paho's network loop is driven by the event loop
(the socket is watched with add_reader/add_writer and `loop_misc` runs every second for
keepalives), so there is no paho thread; the rest of footfall never sees a callback.

Acknowledgement is manual (`manual_ack=True`): the PUBACK of a QoS 1 message is sent only
when the caller calls `ack(message)`, after the message's readings are committed. With a
persistent session (`clean_session=False` and a stable client id) the broker keeps every
message it has not had a PUBACK for, across our disconnects and crashes, and sends it again
when we reconnect: a kill -9 between receipt and commit loses nothing, and a kill between
commit and PUBACK makes a duplicate that the decoder drops (periods and counter readings are
deduplicated). MQTT wants PUBACKs in the order the messages came; the caller keeps that order.

Only the blocking TCP (and TLS) connect runs in a worker thread, as aiomqtt does; paho then
reports the new socket from that thread, so socket callbacks hop to the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from footfall.agent.sources.base import SourceError
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

log = logging.getLogger("footfall.agent.sources.mqtt")
CONNACK_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Message:
    """One received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    duplicate: bool


@dataclass(frozen=True, slots=True)
class _Lost:
    reason: str


class MqttClient:
    """An MQTT 3.1.1 subscriber: `async with MqttClient(...) as client: async for m in client.messages: ...`."""

    def __init__(
        self,
        *,
        host: str,
        port: int = 1883,
        topics: tuple[str, ...],
        qos: int = 1,
        client_id: str,
        clean_session: bool = False,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        keepalive: float = 30.0,
    ) -> None:
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if (cert_file or key_file or ca_file) and not tls:
            raise ValueError("ca_file, cert_file and key_file need tls = true")
        self.host, self.port, self.topics, self.qos = host, port, topics, qos
        self.keepalive = max(5, int(keepalive))
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if username:
            self._client.username_pw_set(username, password or None)
        if tls:
            self._client.tls_set(
                ca_certs=ca_file or None,
                certfile=cert_file or None,
                keyfile=key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._queue: asyncio.Queue[Message | _Lost] = asyncio.Queue()
        self._connack: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc: asyncio.Task[None] | None = None
        self._watched: set[int] = set()
        self.session_present = False
        client = self._client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    async def __aenter__(self) -> MqttClient:
        """Connect, wait for the broker's CONNACK, subscribe; SourceError in plain words if that fails."""
        self._loop = asyncio.get_running_loop()
        self._connack = self._loop.create_future()
        try:
            await asyncio.to_thread(self._client.connect, self.host, self.port, self.keepalive)
        except ssl.SSLError as exc:
            raise SourceError(f"TLS with the MQTT broker {self.host}:{self.port} failed: {exc}") from None
        except ConnectionRefusedError:
            raise SourceError(
                f"the MQTT broker {self.host}:{self.port} refused the connection (broker down or wrong port)"
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot reach the MQTT broker {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._misc = asyncio.create_task(self._misc_loop(), name=f"footfall-mqtt-misc:{self.host}:{self.port}")
        try:
            await asyncio.wait_for(self._connack, CONNACK_TIMEOUT_S)
        except TimeoutError:
            await self._close()
            raise SourceError(f"the MQTT broker {self.host}:{self.port} did not answer CONNECT") from None
        except BaseException:
            # A refusal (SourceError), or the caller giving up (cancelled): never leave the socket open.
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Disconnect (messages not acked stay with the broker)."""
        await self._close()

    @property
    def messages(self) -> AsyncIterator[Message]:
        """Received messages, in order; raises SourceError when the connection is lost."""
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Lost):
                raise SourceError(item.reason)
            yield item

    def ack(self, message: Message) -> None:
        """Send the PUBACK of a QoS 1 message (after its readings are committed)."""
        if message.qos:
            self._client.ack(message.mid, message.qos)

    async def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._client.disconnect()
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        self._unwatch_all()

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1)
            self._client.loop_misc()

    # --- paho callbacks (on the loop thread, except the socket ones during connect) -----------

    def _on_connect(self, client: paho.Client, _: Any, flags: Any, reason: Any, __: Any) -> None:
        if self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(
                SourceError(
                    f"the MQTT broker {self.host}:{self.port} refused us: {reason} "
                    "(check username, password and client_id)"
                )
            )
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        result, _mid = client.subscribe([(topic, self.qos) for topic in self.topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._connack.set_exception(SourceError(f"cannot subscribe on {self.host}:{self.port}: {result}"))
            return
        self._connack.set_result(None)

    def _on_disconnect(self, _client: paho.Client, _: Any, __: Any, reason: Any, ___: Any) -> None:
        message = f"lost the MQTT broker {self.host}:{self.port}: {reason}"
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(SourceError(message))
        self._queue.put_nowait(_Lost(message))

    def _on_message(self, _client: paho.Client, _: Any, msg: paho.MQTTMessage) -> None:
        self._queue.put_nowait(
            Message(msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain), bool(msg.dup))
        )

    def _on_socket_open(self, client: paho.Client, _: Any, sock: Any) -> None:
        self._call(self._watch_read, sock)

    def _on_socket_close(self, _client: paho.Client, _: Any, sock: Any) -> None:
        self._call(self._unwatch, sock)

    def _on_register_write(self, client: paho.Client, _: Any, sock: Any) -> None:
        self._call(self._watch_write, sock)

    def _on_unregister_write(self, _client: paho.Client, _: Any, sock: Any) -> None:
        self._call(self._unwatch_write, sock)

    def _call(self, fn: Any, sock: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(sock)
        else:
            loop.call_soon_threadsafe(fn, sock)

    def _watch_read(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self._loop is None:
            return
        self._watched.add(fd)
        self._loop.add_reader(fd, self._client.loop_read)

    def _watch_write(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self._loop is None:
            return
        self._loop.add_writer(fd, self._client.loop_write)

    def _unwatch_write(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._loop is not None:
            self._loop.remove_writer(fd)

    def _unwatch(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._watched.discard(fd)

    def _unwatch_all(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        for fd in list(self._watched):
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._watched.clear()
