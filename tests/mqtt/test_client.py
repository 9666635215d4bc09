"""The worker's MQTT client on real sockets: against Mosquitto, and against brokers that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from cloud.mqtt import codec
from cloud.mqtt.client import ClosedByBroker, ConnectionLost, ConnectionRefused, MqttClient
from devstack.mosquitto_server import MosquittoServer

V311 = codec.MQTT_3_1_1
CONNACK_OK = codec.encode_connack(False, 0, V311)
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[MosquittoServer]:
    with MosquittoServer() as broker:
        yield broker


@asynccontextmanager
async def scripted_broker(script: Script) -> AsyncIterator[int]:
    """A one-connection broker on a free port: reads the CONNECT, then runs ``script``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        await script(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_publish_returns_at_puback_and_subscribed_messages_arrive(mosquitto: MosquittoServer) -> None:
    received: list[tuple[str, bytes]] = []
    both = asyncio.Event()

    def on_message(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        if len(received) == 2:
            both.set()

    client = await MqttClient.connect(mosquitto.host, mosquitto.port, client_id="t", on_message=on_message)
    try:
        assert await client.subscribe("giftwheel/test/+") == 1
        await asyncio.gather(
            client.publish("giftwheel/test/a", b"1"), client.publish("giftwheel/test/b", b"2")
        )
        await asyncio.wait_for(both.wait(), 5)
    finally:
        await client.close()
    assert sorted(received) == [("giftwheel/test/a", b"1"), ("giftwheel/test/b", b"2")]
    assert not client.is_connected


async def test_a_refused_connect_names_the_reason() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(codec.encode_connack(False, 5, V311))

    async with scripted_broker(refuse) as port:
        with pytest.raises(ConnectionRefused, match="not authorized") as refused:
            await MqttClient.connect("127.0.0.1", port, client_id="t")
    assert refused.value.code == 5


async def test_a_publish_in_the_same_segment_as_the_connack_is_delivered_and_acknowledged() -> None:
    puback = asyncio.get_running_loop().create_future()

    async def connack_and_publish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK + codec.encode_publish("v1/devices/me/rpc/response/1", b"{}", 1, 7, V311))
        puback.set_result(await reader.readexactly(4))

    received: list[tuple[str, bytes]] = []
    async with scripted_broker(connack_and_publish) as port:
        client = await MqttClient.connect(
            "127.0.0.1", port, client_id="t", on_message=lambda *m: received.append(m)
        )
        assert await asyncio.wait_for(puback, 5) == codec.encode_puback(7, 0, V311)
        await client.close()
    assert received == [("v1/devices/me/rpc/response/1", b"{}")]


async def test_a_malformed_packet_from_the_broker_ends_the_connection_and_fails_what_is_in_flight() -> None:
    async def garble_after_publish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        await reader.read(1024)
        writer.write(bytes((0x36, 0)))  # PUBLISH with QoS 3
        await reader.read(1024)

    async with scripted_broker(garble_after_publish) as port:
        client = await MqttClient.connect("127.0.0.1", port, client_id="t")
        with pytest.raises(ConnectionLost):
            await client.publish("t", b"x")
        reason = await client.wait_closed()
    assert isinstance(reason, ConnectionLost)
    assert "malformed" in str(reason)


async def test_a_broker_that_stops_acknowledging_is_dropped_after_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        await reader.read(1024)
        await asyncio.sleep(5)

    async with scripted_broker(silent) as port:
        client = await MqttClient.connect("127.0.0.1", port, client_id="t")
        with pytest.raises(ConnectionLost, match=r"no acknowledgement within 0\.2 s"):
            await client.publish("t", b"x", timeout_s=0.2)
        assert not client.is_connected
        await client.close()


async def test_the_broker_closing_the_socket_is_told_apart() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        writer.close()

    async with scripted_broker(hang_up) as port:
        client = await MqttClient.connect("127.0.0.1", port, client_id="t")
        assert isinstance(await asyncio.wait_for(client.wait_closed(), 5), ClosedByBroker)
