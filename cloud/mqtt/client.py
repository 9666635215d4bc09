"""A small asyncio MQTT 3.1.1 client: exactly what the dispatcher needs, nothing that imports ``paho``.

``publish`` returns once the broker's PUBACK for that packet arrived (QoS 1), so a caller can
tie an acknowledgement in Redis to the broker's. Many publishes may be in flight on one
connection; each awaits its own PUBACK. Incoming PUBLISH packets go to a plain callback.
No session state survives a connection: the caller reconnects and decides what to resend.
Packets are built and parsed by ``cloud.mqtt.codec``, the codec the ThingsBoard emulator serves with.

Why not a maintained client: paho-mqtt (and aiomqtt 2.x, which wraps it) cannot be installed next to
thingsboard-gateway's tb-paho-mqtt-client (the same top-level ``paho`` package); aiomqtt 3 is an
alpha on an MQTT 5-only codec without wheels; gmqtt's ``publish`` cannot be awaited for its PUBACK
and it resends on its own. Measured (``python -m bench.mqtt_client``, docs/architecture.md), 64
publishes in flight to Mosquitto: this client 68,000 PUBACKs/s (p99 2.4 ms), aiomqtt 2.5.1
11,000/s (p99 8.3 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Self

from cloud.mqtt import codec

_VERSION = codec.MQTT_3_1_1
_READ_CHUNK = 65_536

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

MessageCallback = Callable[[str, bytes], None]


class MqttError(Exception):
    """Base of every error this client raises."""


class ConnectionRefused(MqttError):
    def __init__(self, code: int) -> None:
        super().__init__(f"broker refused the connection: {CONNACK_REASONS.get(code, f'code {code}')}")
        self.code = code


class ConnectionLost(MqttError):
    pass


class ClosedByBroker(ConnectionLost):
    """The broker ended the connection (EOF or reset), as opposed to a timeout or our own close."""


class MqttClient:
    """One MQTT connection. Use ``await MqttClient.connect(...)``, then publish/subscribe, close()."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        keepalive_s: int,
        on_message: MessageCallback | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._keepalive_s = keepalive_s
        self._on_message = on_message
        self._frames = codec.FrameReader(codec.MAX_REMAINING_LENGTH)
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[codec.PubAck | codec.SubAck]] = {}
        self._closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 3.0,
        on_message: MessageCallback | None = None,
    ) -> Self:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot reach {host}:{port}: {exc or type(exc).__name__}") from exc
        client = cls(reader, writer, keepalive_s=keepalive_s, on_message=on_message)
        try:
            await asyncio.wait_for(client._handshake(client_id, username, password), timeout_s)
        except TimeoutError:
            writer.close()
            raise ConnectionLost(f"no CONNACK from {host}:{port} within {timeout_s} s") from None
        except BaseException:
            writer.close()
            raise
        client._tasks = [
            asyncio.create_task(client._read_loop(), name="mqtt-read"),
            asyncio.create_task(client._ping_loop(), name="mqtt-ping"),
        ]
        return client

    async def _handshake(self, client_id: str, username: str | None, password: str | None) -> None:
        # clean session: ThingsBoard keeps no session state anyway
        connect = codec.Connect(
            _VERSION,
            client_id,
            keepalive_s=self._keepalive_s,
            username=username,
            password=None if password is None else password.encode(),
        )
        self._writer.write(codec.encode_connect(connect))
        await self._writer.drain()
        packets = await self._read_packets()
        while not packets:
            packets = await self._read_packets()
        connack, rest = packets[0], packets[1:]
        if not isinstance(connack, codec.ConnAck):
            raise ConnectionLost(f"expected CONNACK, got {type(connack).__name__}")
        if connack.reason_code != 0:
            raise ConnectionRefused(connack.reason_code)
        for packet in rest:
            self._dispatch(packet)

    async def _read_packets(self) -> list[codec.Packet]:
        """The packets complete after one read; an empty list while a packet is still partial."""
        try:
            data = await self._reader.read(_READ_CHUNK)
        except OSError as exc:
            raise ClosedByBroker("connection closed by broker") from exc
        if not data:
            raise ClosedByBroker("connection closed by broker")
        try:
            return [
                codec.decode(first, body, _VERSION, zero_publish_id=True)
                for first, body in self._frames.feed(data)
            ]
        except codec.MalformedPacket as exc:
            raise ConnectionLost(f"malformed packet from broker: {exc}") from exc

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                for packet in await self._read_packets():
                    self._dispatch(packet)
        except ConnectionLost as exc:
            error = exc
        finally:
            self._shutdown(error or ConnectionLost("connection closed"))

    def _dispatch(self, packet: codec.Packet) -> None:
        if isinstance(packet, codec.Publish):
            # ThingsBoard numbers its publishes with an int it never wraps and puts the low 16 bits
            # on the wire (DeviceSessionCtx.nextMsgId, netty MqttEncoder), so every 65,536th QoS 1
            # publish carries id 0; a PUBACK 0 makes it close the session (netty MqttDecoder
            # "invalid messageId", MqttTransportHandler.channelRead: MALFORMED_PACKET). Take the
            # message, leave it unacknowledged: ThingsBoard never re-sends a publish anyway.
            if packet.packet_id:
                self._writer.write(codec.encode_puback(packet.packet_id, 0, _VERSION))
            if self._on_message is not None:
                self._on_message(packet.topic, packet.payload)
        elif isinstance(packet, codec.PubAck | codec.SubAck):
            future = self._pending.pop(packet.packet_id, None)
            if future is not None and not future.done():
                future.set_result(packet)
        elif not isinstance(packet, codec.PingResp):
            raise ConnectionLost(f"unexpected {type(packet).__name__} from broker")

    async def _ping_loop(self) -> None:
        # Half the keepalive: a broker may drop a client silent for 1.5x keepalive (s.3.1.2.10).
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            if self._writer.is_closing():
                return
            self._writer.write(codec.encode_pingreq())

    def _packet_id(self) -> int:
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._pending:
                return self._next_id
        raise MqttError("65535 packets in flight: no packet id free")

    async def _request(self, packet_id: int, data: bytes, timeout_s: float) -> codec.PubAck | codec.SubAck:
        if self._closed.done():
            raise ConnectionLost("connection is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[codec.PubAck | codec.SubAck] = loop.create_future()
        self._pending[packet_id] = future
        # A timer, not wait_for: one handle per packet instead of a task (this is the hot path).
        timer = loop.call_later(timeout_s, self._ack_overdue, future, timeout_s)
        self._writer.write(data)
        try:
            await self._writer.drain()
            return await future
        except OSError as exc:
            self._shutdown(ConnectionLost(str(exc)))
            raise ConnectionLost(str(exc)) from exc
        finally:
            timer.cancel()
            self._pending.pop(packet_id, None)

    def _ack_overdue(self, future: asyncio.Future[codec.PubAck | codec.SubAck], timeout_s: float) -> None:
        if not future.done():
            # A broker that stops acknowledging is as good as gone: drop it and let the caller reconnect.
            self._shutdown(ConnectionLost(f"no acknowledgement within {timeout_s} s"))

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
        """Publish with QoS 1 and return once the broker acknowledged it (PUBACK)."""
        packet_id = self._packet_id()
        await self._request(
            packet_id, codec.encode_publish(topic, payload, 1, packet_id, _VERSION), timeout_s
        )

    async def subscribe(self, topic: str, *, qos: int = 1, timeout_s: float = 5.0) -> int:
        """Subscribe and return the granted QoS; a refused filter (0x80) raises MqttError."""
        packet_id = self._packet_id()
        ack = await self._request(
            packet_id, codec.encode_subscribe(packet_id, [(topic, qos)], _VERSION), timeout_s
        )
        granted = ack.reason_codes if isinstance(ack, codec.SubAck) else []
        if not granted or granted[0] == 0x80:
            raise MqttError(f"broker refused the subscription to {topic!r}")
        return granted[0]

    @property
    def is_connected(self) -> bool:
        return not self._closed.done()

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection ends; returns why."""
        return await asyncio.shield(self._closed)

    def _shutdown(self, reason: BaseException) -> None:
        if not self._closed.done():
            self._closed.set_result(reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(str(reason)))
        self._pending.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._writer.close()

    async def close(self) -> None:
        """Send DISCONNECT (a clean goodbye) and close the socket."""
        if not self._closed.done():
            with contextlib.suppress(OSError):
                self._writer.write(codec.encode_disconnect(0, _VERSION))
                await self._writer.drain()
        self._shutdown(ConnectionLost("closed by client"))
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
