"""CPU per call and latency of the HTTP clients against one local keep-alive server.

    flock /tmp/pytest.lock .venv/bin/python -m bench.http_client [--calls 5000] [--rounds 3]

The server runs in a child process and answers every request with a fixed 200 at once, so the
client process's CPU time (time.process_time) per call is the client's cost and the latency is
mostly the client's too. Each round runs every client sequentially (one connection, one call at
a time) and with 16 concurrent callers (16 connections, as the REST API call node's pool);
rounds alternate the clients so drift hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from devstack.ports import free_port

_BODY = b'{"deviceName":"motor_01","values":{"rounds":3,"state":"running","commandId":"0123456789abcdef"}}'
_HEADERS = {"Content-Type": "application/json", "X-Giftwheel-Secret": "bench-secret"}
_ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'

Call = Callable[[], Awaitable[int]]


async def _serve(port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(_ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


async def _measure(calls: list[Call], total: int) -> tuple[float, list[float]]:
    """Run ``total`` calls spread over the callers; CPU ms per call and each call's latency in ms."""
    latencies: list[float] = []
    per_caller = total // len(calls)

    async def caller(call: Call) -> None:
        for _ in range(per_caller):
            started = time.perf_counter()
            status = await call()
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200, status

    cpu = time.process_time()
    await asyncio.gather(*(caller(call) for call in calls))
    return (time.process_time() - cpu) * 1000 / len(latencies), latencies


async def _httpx_calls(url: str, n: int, client: httpx.AsyncClient) -> list[Call]:
    async def call() -> int:
        return (await client.post(url, content=_BODY, headers=_HEADERS)).status_code

    return [call] * n


async def _http1_calls(port: int, n: int, connections: list[object]) -> list[Call]:
    from devstack.http1 import Http1Connection

    head = "".join(f"{k}: {v}\r\n" for k, v in _HEADERS.items()).encode()

    def make() -> Call:
        connection = Http1Connection("127.0.0.1", port)
        connections.append(connection)

        async def call() -> int:
            return (await connection.request("POST", "/api/webhook", head, _BODY)).status

        return call

    return [make() for _ in range(n)]


async def _run(port: int, total: int, rounds: int) -> None:
    url = f"http://127.0.0.1:{port}/api/webhook"
    results: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    for _ in range(rounds):
        for name in ("http1", "httpx"):
            for concurrency in (1, 16):
                connections: list[object] = []
                async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:
                    if name == "httpx":
                        calls = await _httpx_calls(url, concurrency, client)
                    else:
                        calls = await _http1_calls(port, concurrency, connections)
                    await _measure(calls, 200 * concurrency)  # warm: connections open, code paths hot
                    cpu, latencies = await _measure(calls, total)
                for connection in connections:
                    connection.close()  # type: ignore[attr-defined]
                cpus, lats = results.setdefault((name, concurrency), ([], []))
                cpus.append(cpu)
                lats.extend(latencies)
    print(
        f"{total} calls x {rounds} rounds, POST {len(_BODY)} B, "
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}"
    )
    print("client  callers  CPU ms/call (each round)     p50 ms  p99 ms  max ms")
    for (name, concurrency), (cpus, lats) in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        q = statistics.quantiles(lats, n=100)
        rounds_cpu = " ".join(f"{c:.3f}" for c in cpus)
        print(
            f"{name:7} {concurrency:7}  {statistics.median(cpus):.3f} ({rounds_cpu})"
            f"  {q[49]:7.3f} {q[98]:7.3f} {max(lats):7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per client, callers and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child process: serve on this port
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.http_client", "--serve", str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        asyncio.run(_run(port, args.calls, args.rounds))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
