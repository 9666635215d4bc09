"""A small asyncio MQTT 3.1.1 client: exactly what the dispatcher needs, nothing that imports ``paho``.

``publish`` returns once the broker's PUBACK for that packet arrived (QoS 1), so a caller can
tie an acknowledgement in Redis to the broker's. Many publishes may be in flight on one
connection; each awaits its own PUBACK. Incoming PUBLISH packets go to a plain callback.
No session state survives a connection: the caller reconnects and decides what to resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Self

# Packet types (MQTT 3.1.1 s.2.2.1).
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = (
    1, 2, 3, 4, 8, 9, 12, 13, 14
)  # fmt: skip
_MAX_REMAINING = 268_435_455

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


def _encode_length(length: int) -> bytes:
    if not 0 <= length <= _MAX_REMAINING:
        raise MqttError(f"packet of {length} bytes exceeds MQTT's limit")
    out = bytearray()
    while True:
        digit, length = length % 128, length // 128
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _encode_length(len(body)) + body


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
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
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
        flags = 0x02  # clean session: ThingsBoard keeps no session state anyway
        payload = _string(client_id)
        if username is not None:
            flags |= 0x80
            payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
        header = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", self._keepalive_s)
        self._writer.write(_packet(_CONNECT << 4, header + payload))
        await self._writer.drain()
        kind, body = await self._read_packet()
        if kind != _CONNACK or len(body) != 2:
            raise ConnectionLost(f"expected CONNACK, got packet type {kind}")
        if body[1] != 0:
            raise ConnectionRefused(body[1])

    async def _read_packet(self) -> tuple[int, bytes]:
        try:
            first = await self._reader.readexactly(1)
            length, shift = 0, 0
            while True:
                digit = (await self._reader.readexactly(1))[0]
                length |= (digit & 0x7F) << shift
                if not digit & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ConnectionLost("malformed remaining length from broker")
            body = await self._reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise ClosedByBroker("connection closed by broker") from exc
        # Keep the flags in the low nibble for PUBLISH (qos, retain); other types ignore them.
        return (first[0] >> 4) | ((first[0] & 0x0F) << 8), body

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                kind_flags, body = await self._read_packet()
                kind, flags = kind_flags & 0xFF, kind_flags >> 8
                if kind == _PUBLISH:
                    self._on_publish(flags, body)
                elif kind in (_PUBACK, _SUBACK):
                    (packet_id,) = struct.unpack_from("!H", body)
                    future = self._pending.pop(packet_id, None)
                    if future is not None and not future.done():
                        future.set_result(body[2:])
                elif kind == _PINGRESP:
                    pass
                else:
                    raise ConnectionLost(f"unexpected packet type {kind} from broker")
        except (ConnectionLost, struct.error) as exc:
            error = exc if isinstance(exc, ConnectionLost) else ConnectionLost(f"malformed packet: {exc}")
        finally:
            self._shutdown(error or ConnectionLost("connection closed"))

    def _on_publish(self, flags: int, body: bytes) -> None:
        qos = (flags >> 1) & 0x03
        (topic_len,) = struct.unpack_from("!H", body)
        topic = body[2 : 2 + topic_len].decode()
        offset = 2 + topic_len
        if qos:
            (packet_id,) = struct.unpack_from("!H", body, offset)
            offset += 2
            self._writer.write(_packet(_PUBACK << 4, struct.pack("!H", packet_id)))
        if self._on_message is not None:
            self._on_message(topic, body[offset:])

    async def _ping_loop(self) -> None:
        # Half the keepalive: a broker may drop a client silent for 1.5x keepalive (s.3.1.2.10).
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            if self._writer.is_closing():
                return
            self._writer.write(_packet(_PINGREQ << 4, b""))

    def _packet_id(self) -> int:
        for _ in range(65_535):
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._pending:
                return self._next_id
        raise MqttError("65535 packets in flight: no packet id free")

    async def _request(self, packet_id: int, data: bytes, timeout_s: float) -> bytes:
        if self._closed.done():
            raise ConnectionLost("connection is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
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

    def _ack_overdue(self, future: asyncio.Future[bytes], timeout_s: float) -> None:
        if not future.done():
            # A broker that stops acknowledging is as good as gone: drop it and let the caller reconnect.
            self._shutdown(ConnectionLost(f"no acknowledgement within {timeout_s} s"))

    async def publish(self, topic: str, payload: bytes, *, timeout_s: float = 5.0) -> None:
        """Publish with QoS 1 and return once the broker acknowledged it (PUBACK)."""
        packet_id = self._packet_id()
        body = _string(topic) + struct.pack("!H", packet_id) + payload
        await self._request(packet_id, _packet((_PUBLISH << 4) | 0x02, body), timeout_s)

    async def subscribe(self, topic: str, *, qos: int = 1, timeout_s: float = 5.0) -> int:
        """Subscribe and return the granted QoS; a refused filter (0x80) raises MqttError."""
        packet_id = self._packet_id()
        body = struct.pack("!H", packet_id) + _string(topic) + bytes([qos])
        granted = await self._request(packet_id, _packet((_SUBSCRIBE << 4) | 0x02, body), timeout_s)
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
                self._writer.write(_packet(_DISCONNECT << 4, b""))
                await self._writer.drain()
        self._shutdown(ConnectionLost("closed by client"))
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
