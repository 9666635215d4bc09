"""The worker's MQTT client against a maintained one: QoS 1 PUBLISH -> PUBACK over real TCP to Mosquitto.

    .venv/bin/python -m bench.mqtt_client
    .venv/bin/python -m bench.mqtt_client --candidate-python /tmp/mqtt-candidates/bin/python

What the dispatcher needs from a client is a publish whose ``await`` returns at that packet's
PUBACK, many in flight on one connection. Two loads, each ``--seconds`` long after a warm-up:
``sequential`` (one publish at a time: the round trip) and ``window`` (``--window`` publishes in
flight, as a batch is pipelined). Per load: publishes/s and latency p50/p99/max in ms.

The broker is Mosquitto (C), so the figures are the client's cost. ``aiomqtt`` 2.x wraps paho-mqtt,
whose top-level ``paho`` package thingsboard-gateway's ``tb-paho-mqtt-client`` also installs, so it
runs in a separate virtual environment (``python -m venv /tmp/mqtt-candidates &&
/tmp/mqtt-candidates/bin/pip install aiomqtt``), given as ``--candidate-python``; this script then
runs itself there with ``--client aiomqtt --broker host:port`` against the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

TOPIC = "bench/devices/me/rpc/request/1"
PAYLOAD = b'{"method":"rotate","params":{"device":"motor_01","commandId":"c-0123456789","rounds":3}}'

Publish = Callable[[], Awaitable[None]]


async def measure(publish: Publish, concurrency: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    counting = False
    stop = False

    async def lane() -> None:
        while not stop:
            started = time.perf_counter()
            await publish()
            if counting:
                latencies.append(time.perf_counter() - started)

    lanes = [asyncio.create_task(lane()) for _ in range(concurrency)]
    await asyncio.sleep(warmup_s)
    counting, began = True, time.perf_counter()
    await asyncio.sleep(seconds)
    counting, elapsed = False, time.perf_counter() - began
    stop = True
    await asyncio.gather(*lanes)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "publishes_per_s": round(len(ms) / elapsed),
        "p50_ms": round(ms[len(ms) // 2], 3),
        "p99_ms": round(ms[int(len(ms) * 0.99)], 3),
        "max_ms": round(ms[-1], 3),
    }


async def run_ours(host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    from cloud.mqtt.client import MqttClient

    client = await MqttClient.connect(host, port, client_id="bench-ours")
    try:

        async def publish() -> None:
            await client.publish(TOPIC, PAYLOAD)

        return await run_loads(publish, args)
    finally:
        await client.close()


async def run_aiomqtt(host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    # Imported by name: it is not installed next to the project (see the module docstring).
    aiomqtt: Any = importlib.import_module("aiomqtt")
    async with aiomqtt.Client(
        host, port, identifier="bench-aiomqtt", max_inflight_messages=args.window + 1
    ) as client:

        async def publish() -> None:
            await client.publish(TOPIC, PAYLOAD, qos=1)

        return await run_loads(publish, args)


async def run_loads(publish: Publish, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "sequential": await measure(publish, 1, args.seconds, args.warmup),
        f"window_{args.window}": await measure(publish, args.window, args.seconds, args.warmup),
    }


CLIENTS = {"ours": run_ours, "aiomqtt": run_aiomqtt}


def run_candidate(python: str, host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    argv = [python, "-m", "bench.mqtt_client", "--client", "aiomqtt", "--broker", f"{host}:{port}"]
    argv += ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--window", str(args.window)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)["aiomqtt"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", choices=sorted(CLIENTS), default="ours")
    parser.add_argument("--broker", help="host:port of a running broker (default: start Mosquitto)")
    parser.add_argument("--candidate-python", help="an interpreter with aiomqtt installed, to compare")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args()
    if args.broker:
        host, port = args.broker.rsplit(":", 1)
        results = {args.client: asyncio.run(CLIENTS[args.client](host, int(port), args))}
    else:
        from devstack.mosquitto_server import MosquittoServer

        with MosquittoServer() as broker:
            results = {args.client: asyncio.run(CLIENTS[args.client](broker.host, broker.port, args))}
            if args.candidate_python:
                results["aiomqtt"] = run_candidate(args.candidate_python, broker.host, broker.port, args)
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
