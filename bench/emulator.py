"""Throughput of the ThingsBoard emulator: QoS 1 telemetry and dispatcher RPC round trips over real TCP.

    .venv/bin/python -m bench.emulator --mode telemetry --devices 50 --window 64 --seconds 10
    .venv/bin/python -m bench.emulator --mode rpc --pairs 8 --window 16 --seconds 10
    .venv/bin/python -m bench.emulator --mode rpc --pairs 8 --rate 1000 --seconds 10

The emulator runs as its own process (``giftwheel tb-emulator``, the shipped rule chain); the load
generator is one asyncio process with pipelining raw MQTT connections (a window of unacknowledged
QoS 1 publishes each). Telemetry mode counts PUBACKs: every one is a message the emulator parsed,
ran through the rule chain (message type switch -> save timeseries + device profile switch) and
acknowledged. RPC mode counts dispatcher round trips (client RPC -> chain -> v1/gateway/rpc -> gateway
reply -> chain -> response): 4 PUBLISHes and 3 PUBACKs on the wire each, plus latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from cloud.mqtt import codec
from devstack.tb_emulator.harness import EmulatorProcess

PUBACK = 0x40
TELEMETRY = "v1/devices/me/telemetry"
P = TypeVar("P", bound=asyncio.Protocol)


def _factory(protocol: P) -> Callable[[], P]:
    return lambda: protocol


@dataclass
class Counters:
    acked: int = 0
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class TelemetryPublisher(asyncio.Protocol):
    """Keeps ``window`` QoS 1 telemetry publishes in flight on one connection."""

    def __init__(self, token: str, window: int, counters: Counters, payload: bytes) -> None:
        self.token = token
        self.window = window
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.reader = codec.FrameReader(1 << 20)
        self.connected = asyncio.get_running_loop().create_future()
        self.running = True
        self._next_id = 0
        self._payload = payload

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        connect = codec.Connect(codec.MQTT_3_1_1, f"bench-{self.token}", username=self.token)
        assert self.transport is not None
        self.transport.write(codec.encode_connect(connect))

    def _frames(self, count: int) -> bytes:
        out = []
        for _ in range(count):
            self._next_id = self._next_id % 65535 + 1
            out.append(codec.encode_publish(TELEMETRY, self._payload, 1, self._next_id, codec.MQTT_3_1_1))
        self.counters.sent += count
        return b"".join(out)

    def data_received(self, data: bytes) -> None:
        acks = 0
        for first, _body in self.reader.feed(data):
            if first == PUBACK:
                acks += 1
            elif first >> 4 == codec.PacketType.CONNACK:
                self.connected.set_result(None)
        if acks:
            self.counters.acked += acks
            if self.running and self.transport is not None:
                self.transport.write(self._frames(acks))

    def start(self) -> None:
        assert self.transport is not None
        self.transport.write(self._frames(self.window))


async def run_telemetry(tb: EmulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counters = Counters()
    payload = orjson.dumps({"roundsCompleted": 12345, "state": "running", "queuedRounds": 7, "rpm": 60.5})
    publishers = []
    for i in range(args.devices):
        publisher = TelemetryPublisher(f"bench-{i}", args.window, counters, payload)
        await loop.create_connection(_factory(publisher), tb.host, tb.mqtt_port)
        publishers.append(publisher)
    await asyncio.gather(*(p.connected for p in publishers))
    for p in publishers:
        p.start()
    await asyncio.sleep(args.warmup)
    start_acked, started = counters.acked, time.perf_counter()
    await asyncio.sleep(args.seconds)
    acked, elapsed = counters.acked - start_acked, time.perf_counter() - started
    for p in publishers:
        p.running = False
    await asyncio.sleep(0.5)
    for p in publishers:
        assert p.transport is not None
        p.transport.close()
    stats = tb.stats()
    return {
        "mode": "telemetry",
        "connections": args.devices,
        "window": args.window,
        "seconds": round(elapsed, 2),
        "messages_acked": acked,
        "messages_per_s": round(acked / elapsed),
        "emulator_telemetry_msgs": stats.get("telemetry_msgs"),
        "emulator_bad_payloads": stats.get("bad_payloads", 0),
    }


class Dispatcher(asyncio.Protocol):
    """Sends client-side ``rotate`` RPCs (window in flight) and times each response."""

    def __init__(self, index: int, window: int, counters: Counters) -> None:
        self.index = index
        self.window = window
        self.counters = counters
        self.transport: asyncio.Transport | None = None
        self.reader = codec.FrameReader(1 << 20)
        self.ready = asyncio.get_running_loop().create_future()
        self.running = True
        self.inflight: dict[int, float] = {}
        self._next = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        connect = codec.Connect(
            codec.MQTT_3_1_1, f"dispatcher-{self.index}", username=f"dispatcher-{self.index}"
        )
        self.transport.write(codec.encode_connect(connect))
        self.transport.write(
            codec.encode_subscribe(1, [("v1/devices/me/rpc/response/+", 1)], codec.MQTT_3_1_1)
        )

    def send(self) -> None:
        assert self.transport is not None
        self._next += 1
        n = self._next
        body = {
            "method": "rotate",
            "params": {"device": f"motor-{self.index}", "commandId": f"c-{n:010x}", "rounds": 1},
        }
        packet_id = n % 65535 + 1
        self.inflight[n] = time.perf_counter()
        topic = f"v1/devices/me/rpc/request/{n}"
        self.transport.write(codec.encode_publish(topic, orjson.dumps(body), 1, packet_id, codec.MQTT_3_1_1))
        self.counters.sent += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for first, body in self.reader.feed(data):
            kind = first >> 4
            if kind == codec.PacketType.SUBACK:
                self.ready.set_result(None)
            elif kind == codec.PacketType.PUBLISH:
                packet = codec.decode(first, body, codec.MQTT_3_1_1)
                assert isinstance(packet, codec.Publish)
                if packet.packet_id is not None:
                    self.transport.write(codec.encode_puback(packet.packet_id, 0, codec.MQTT_3_1_1))
                n = int(packet.topic.rsplit("/", 1)[1])
                sent = self.inflight.pop(n, None)
                if sent is not None and b"accepted" in packet.payload:
                    self.counters.acked += 1
                    self.counters.latencies_ms.append((time.perf_counter() - sent) * 1000)
                if self.running and self.window:
                    self.send()


class Gateway(asyncio.Protocol):
    """Answers every v1/gateway/rpc at once with an accepted reply, as the Pi connector does."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.reader = codec.FrameReader(1 << 20)
        self.ready = asyncio.get_running_loop().create_future()
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        connect = codec.Connect(codec.MQTT_3_1_1, f"gw-{self.index}", username=f"gateway-{self.index}")
        self.transport.write(codec.encode_connect(connect))
        self.transport.write(codec.encode_subscribe(1, [("v1/gateway/rpc", 1)], codec.MQTT_3_1_1))
        body = orjson.dumps({"device": f"motor-{self.index}", "type": "motor"})
        self.transport.write(codec.encode_publish("v1/gateway/connect", body, 1, 2, codec.MQTT_3_1_1))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        out = []
        for first, body in self.reader.feed(data):
            kind = first >> 4
            if kind == codec.PacketType.SUBACK:
                self.ready.set_result(None)
            elif kind == codec.PacketType.PUBLISH:
                packet = codec.decode(first, body, codec.MQTT_3_1_1)
                assert isinstance(packet, codec.Publish)
                if packet.packet_id is not None:
                    out.append(codec.encode_puback(packet.packet_id, 0, codec.MQTT_3_1_1))
                request = orjson.loads(packet.payload)
                params = request["data"]["params"]
                answer = {"accepted": True, "commandId": params["commandId"], "queuedRounds": 1}
                reply = {"device": request["device"], "id": request["data"]["id"], "data": answer}
                self._next_id = self._next_id % 60000 + 3
                out.append(codec.encode_publish("v1/gateway/rpc", orjson.dumps(reply), 1, self._next_id, 4))
        if out:
            self.transport.write(b"".join(out))


async def pace(dispatcher: Dispatcher, rate_per_s: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while dispatcher.running:
        due = int((loop.time() - started) * rate_per_s)
        while sent < due:
            dispatcher.send()
            sent += 1
        await asyncio.sleep(0.001)


async def run_rpc(tb: EmulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counters = Counters()
    gateways = []
    dispatchers = []
    for i in range(args.pairs):
        gateway, dispatcher = Gateway(i), Dispatcher(i, args.window, counters)
        await loop.create_connection(_factory(gateway), tb.host, tb.mqtt_port)
        await loop.create_connection(_factory(dispatcher), tb.host, tb.mqtt_port)
        gateways.append(gateway)
        dispatchers.append(dispatcher)
    await asyncio.gather(*(g.ready for g in gateways), *(d.ready for d in dispatchers))
    await asyncio.sleep(0.2)
    pacers = []
    if args.rate:
        # open loop: a fixed request rate, whatever the latency (how a worker at N events/s behaves)
        for d in dispatchers:
            d.window = 0
            pacers.append(loop.create_task(pace(d, args.rate / args.pairs)))
    else:
        for d in dispatchers:
            for _ in range(args.window):
                d.send()
    await asyncio.sleep(args.warmup)
    start_acked, started = counters.acked, time.perf_counter()
    counters.latencies_ms.clear()
    await asyncio.sleep(args.seconds)
    acked, elapsed = counters.acked - start_acked, time.perf_counter() - started
    latencies = sorted(counters.latencies_ms)
    for d in dispatchers:
        d.running = False
    for pacer in pacers:
        pacer.cancel()
    await asyncio.sleep(0.5)
    for transport in [d.transport for d in dispatchers] + [g.transport for g in gateways]:
        assert transport is not None
        transport.close()
    rate = acked / elapsed
    return {
        "mode": "rpc",
        "pairs": args.pairs,
        "window": None if args.rate else args.window,
        "offered_rate_per_s": args.rate or None,
        "seconds": round(elapsed, 2),
        "round_trips": acked,
        "round_trips_per_s": round(rate),
        # each round trip is 4 PUBLISHes + 3 PUBACKs through the emulator
        "mqtt_publishes_per_s": round(rate * 4),
        "mqtt_packets_per_s": round(rate * 7),
        "latency_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
    }


def devices_for(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.mode == "telemetry":
        return [{"name": f"bench-{i}", "token": f"bench-{i}", "type": "bench"} for i in range(args.devices)]
    devices: list[dict[str, Any]] = []
    for i in range(args.pairs):
        devices += [
            {"name": f"dispatcher-{i}", "token": f"dispatcher-{i}", "type": "dispatcher"},
            {"name": f"gateway-{i}", "token": f"gateway-{i}", "type": "gateway", "gateway": True},
            {"name": f"motor-{i}", "type": "motor"},
        ]
    return devices


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with EmulatorProcess(devices_for(args), log_level="WARNING") as tb:
        result = await (run_telemetry(tb, args) if args.mode == "telemetry" else run_rpc(tb, args))
        result["emulator_pid"] = tb.pid
    result["cpus"] = os.cpu_count()
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("telemetry", "rpc"), default="telemetry")
    parser.add_argument("--devices", type=int, default=50, help="telemetry: device connections")
    parser.add_argument("--pairs", type=int, default=8, help="rpc: dispatcher + gateway connection pairs")
    parser.add_argument("--window", type=int, default=64, help="unacknowledged messages per connection")
    parser.add_argument(
        "--rate", type=float, default=0, help="rpc: fixed total request rate/s instead of a window"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop

        outcome = uvloop.run(main(arguments))
    except ImportError:
        outcome = asyncio.run(main(arguments))
    print(json.dumps(outcome, indent=2))
