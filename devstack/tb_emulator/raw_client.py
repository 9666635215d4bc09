"""A bare asyncio MQTT client on the emulator's codec: sees every packet, reason code and close.

For the bad-input tests and the benchmark, where the real clients hide what is on the wire
(paho retries, swallows reason codes, reconnects). Not a general client: no reconnect, no QoS 2.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from cloud.mqtt import codec


class RawMqttClient:
    def __init__(self, host: str, port: int, *, version: int = codec.MQTT_3_1_1) -> None:
        self.host = host
        self.port = port
        self.version = version
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._frames = codec.FrameReader(16 * 1024 * 1024)
        self._next_id = 0
        self.connack: codec.ConnAck | None = None
        self.messages: asyncio.Queue[codec.Publish] = asyncio.Queue()
        self.acks: dict[int, asyncio.Future[codec.Packet]] = {}
        self.disconnect: codec.Disconnect | None = None
        self.closed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._connack_waiter: asyncio.Future[codec.ConnAck] | None = None

    async def connect(
        self,
        username: str | None,
        *,
        client_id: str = "raw",
        password: bytes | None = None,
        clean: bool = True,
    ) -> codec.ConnAck:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        loop = asyncio.get_running_loop()
        self._connack_waiter = loop.create_future()
        self._pump = loop.create_task(self._read())
        packet = codec.Connect(
            self.version, client_id, clean_start=clean, username=username, password=password
        )
        self.write(codec.encode_connect(packet))
        return await asyncio.wait_for(self._connack_waiter, 5)

    def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def publish(self, topic: str, payload: bytes, qos: int = 1, *, timeout_s: float = 5) -> int | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code (None if QoS 0)."""
        if qos == 0:
            self.write(codec.encode_publish(topic, payload, 0, None, self.version))
            return None
        packet_id = self.packet_id()
        ack = self._expect(packet_id)
        self.write(codec.encode_publish(topic, payload, qos, packet_id, self.version))
        result = await asyncio.wait_for(ack, timeout_s)
        assert isinstance(result, codec.PubAck)
        return result.reason_code

    async def subscribe(self, *topics: str, qos: int = 1, timeout_s: float = 5) -> list[int]:
        packet_id = self.packet_id()
        ack = self._expect(packet_id)
        self.write(codec.encode_subscribe(packet_id, [(t, qos) for t in topics], self.version))
        result = await asyncio.wait_for(ack, timeout_s)
        assert isinstance(result, codec.SubAck)
        return result.reason_codes

    async def next_message(self, timeout_s: float = 5) -> codec.Publish:
        return await asyncio.wait_for(self.messages.get(), timeout_s)

    def puback(self, packet_id: int) -> None:
        self.write(codec.encode_puback(packet_id, 0, self.version))

    def _expect(self, packet_id: int) -> asyncio.Future[codec.Packet]:
        future: asyncio.Future[codec.Packet] = asyncio.get_running_loop().create_future()
        self.acks[packet_id] = future
        return future

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while data := await self._reader.read(65536):
                for first, body in self._frames.feed(data):
                    # sees what ThingsBoard sends, a publish with packet id 0 included
                    self._on_packet(codec.decode(first, body, self.version, zero_publish_id=True))
        except (ConnectionError, codec.MalformedPacket):
            pass
        finally:
            self.closed.set()
            for future in self.acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            if self._connack_waiter is not None and not self._connack_waiter.done():
                self._connack_waiter.set_exception(ConnectionError("closed before CONNACK"))

    def _on_packet(self, packet: codec.Packet) -> None:
        if isinstance(packet, codec.ConnAck):
            self.connack = packet
            if self._connack_waiter is not None and not self._connack_waiter.done():
                self._connack_waiter.set_result(packet)
        elif isinstance(packet, codec.Publish):
            self.messages.put_nowait(packet)
        elif isinstance(packet, codec.PubAck | codec.SubAck | codec.UnsubAck):
            future = self.acks.pop(packet.packet_id, None)
            if future is not None and not future.done():
                future.set_result(packet)
        elif isinstance(packet, codec.Disconnect):
            self.disconnect = packet

    async def wait_closed(self, timeout_s: float = 5) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout_s)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
