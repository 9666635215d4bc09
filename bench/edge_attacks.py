"""Attacks on the API's public edge (slow and idle connections, a huge header, junk frames, torn
bodies, unpolled handshakes, a large polling body), each against a fresh `giftwheel api` process.

Run:  .venv/bin/python -m bench.edge_attacks [--slow 250] [--idle 5000] [--handshakes 25000]

Each attack prints what it did to the API: connections still open, whether /healthz answered,
what a 100 MB header got, log lines written, sessions admitted. Settings are the defaults, so the
same script measures a checkout from before the limits existed. The API gets an open-file limit
of ``--open-files`` so that the idle flood can exceed it from this one client process.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import psutil
import websockets

from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer

KEY = "bench-key-0123456789abcdef"
SECRET = "bench-secret-0123456789abcdef"
_HEAD = b"GET /healthz HTTP/1.1\r\nHost: api\r\n"


def _rss_mb(api: ApiProcess) -> float:
    assert api.pid is not None
    process = psutil.Process(api.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1e6


def _log_lines(api: ApiProcess) -> int:
    return len(api.log_path.read_text(errors="replace").splitlines())


async def _healthz_s(api: ApiProcess) -> str:
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            status = (await client.get(f"{api.url}/healthz")).status_code
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})"
    return f"{status} in {time.perf_counter() - started:.2f} s"


async def _open(api: ApiProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", api.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65_536):
                pass
    except (TimeoutError, ConnectionError):
        return False
    return True


async def slow(api: ApiProcess, count: int, wait_s: float) -> None:
    """count slow-header and count slow-body connections, a byte every second."""
    conns = [await _open(api) for _ in range(2 * count)]
    body_head = (
        f"POST /v1/events HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    for i, (_, writer) in enumerate(conns):
        writer.write(_HEAD if i < count else body_head)

    async def trickle(writer: asyncio.StreamWriter) -> None:
        with_errors = (ConnectionError, RuntimeError)
        for _ in range(int(wait_s)):
            try:
                writer.write(b"x")
                await writer.drain()
            except with_errors:
                return
            await asyncio.sleep(1)

    tricklers = [asyncio.create_task(trickle(w)) for _, w in conns]
    closed = await asyncio.gather(*(_closed_within(r, wait_s) for r, _ in conns))
    for task in tricklers:
        task.cancel()
    heads, bodies = sum(closed[:count]), sum(closed[count:])
    print(
        f"slow: {heads}/{count} slow-header and {bodies}/{count} slow-body connections"
        f" closed in {wait_s:.0f} s"
    )
    for _, writer in conns:
        writer.close()


async def idle(api: ApiProcess, count: int) -> None:
    conns = []
    for _ in range(count):
        try:
            conns.append(await _open(api))
        except OSError:
            break
    await asyncio.sleep(1)
    print(f"idle: {len(conns)} idle connections held, /healthz: {await _healthz_s(api)}")
    for _, writer in conns:
        writer.close()


async def big_header(api: ApiProcess, megabytes: int) -> None:
    rss = _rss_mb(api)
    reader, writer = await _open(api)
    # Read while writing, as a browser or curl does: a server that answers and closes mid-upload
    # resets the connection, and a client that only reads once it has written never sees the answer.
    answer = asyncio.create_task(reader.readline())
    writer.write(_HEAD + b"X-Big: ")
    sent = 0
    chunk = b"a" * 1_048_576
    try:
        for _ in range(megabytes):
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        writer.write(b"\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass
    try:
        async with asyncio.timeout(30):
            status = (await answer).decode().strip() or "closed without an answer"
    except (TimeoutError, ConnectionError) as exc:
        status = f"no answer ({type(exc).__name__})"
    writer.close()
    print(
        f"header: {sent / 1e6:.0f} MB of a {megabytes} MB header sent, answer {status!r},"
        f" RSS {rss:.0f} -> {_rss_mb(api):.0f} MB"
    )


async def junk_frames(api: ApiProcess, frames: int) -> None:
    before = _log_lines(api)
    url = api.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    sent = 0
    async with websockets.connect(url) as ws:
        await ws.recv()
        try:
            while sent < frames:
                await ws.send("4garbage")
                sent += 1
            await asyncio.sleep(2)
            await ws.send("4garbage")
            state = "still open"
        except websockets.ConnectionClosed:
            state = f"closed after {sent} frames"
    await asyncio.sleep(1)
    print(f"junk: {frames} junk Socket.IO frames -> connection {state}, {_log_lines(api) - before} log lines")


async def torn_signed(api: ApiProcess, count: int) -> None:
    before = _log_lines(api)
    for _ in range(count):
        _, writer = await _open(api)
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: api\r\nX-Giftwheel-Signature: sha256=00\r\n"
            b"X-Giftwheel-Timestamp: 1\r\nContent-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        writer.close()
    await asyncio.sleep(2)
    print(f"torn: {count} signed requests torn mid-body -> {_log_lines(api) - before} log lines")


async def handshakes(api: ApiProcess, count: int) -> None:
    rss = _rss_mb(api)
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=api.url, timeout=30, limits=limits) as client:
        for start in range(0, count, 500):
            replies = await asyncio.gather(
                *(client.get("/socket.io/?EIO=4&transport=polling") for _ in range(min(500, count - start)))
            )
            for reply in replies:
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
    print(
        f"handshakes: {count} unpolled engine.io handshakes -> {statuses},"
        f" RSS {rss:.0f} -> {_rss_mb(api):.0f} MB"
    )


async def big_polling_post(api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        sid = (await client.get("/socket.io/?EIO=4&transport=polling")).text.split('"sid":"')[1].split('"')[0]
        await client.post(f"/socket.io/?EIO=4&transport=polling&sid={sid}", content=b"40")
        try:
            reply = await client.post(
                f"/socket.io/?EIO=4&transport=polling&sid={sid}", content=b"4" + b"x" * 1_500_000
            )
            answer = str(reply.status_code)
        except httpx.HTTPError as exc:
            answer = f"no answer in 10 s ({type(exc).__name__})"
    print(f"polling: a 1.5 MB polling POST -> {answer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=250)
    parser.add_argument("--slow-wait-s", type=float, default=45.0)
    parser.add_argument("--idle", type=int, default=5_000)
    parser.add_argument("--open-files", type=int, default=4_096)
    parser.add_argument("--header-mb", type=int, default=100)
    parser.add_argument("--junk", type=int, default=10_000)
    parser.add_argument("--torn", type=int, default=100)
    parser.add_argument("--handshakes", type=int, default=25_000)
    args = parser.parse_args()
    attacks: list[Callable[[ApiProcess], Coroutine[Any, Any, None]]] = [
        lambda api: slow(api, args.slow, args.slow_wait_s),
        lambda api: idle(api, args.idle),
        lambda api: big_header(api, args.header_mb),
        lambda api: junk_frames(api, args.junk),
        lambda api: torn_signed(api, args.torn),
        lambda api: handshakes(api, args.handshakes),
        big_polling_post,
    ]
    with RedisServer() as redis:
        env = {
            "GIFTWHEEL_REDIS_URL": redis.url,
            "GIFTWHEEL_API_KEYS": KEY,
            "GIFTWHEEL_WEBHOOK_SECRETS": SECRET,
        }
        for attack in attacks:
            with ApiProcess(env, max_open_files=args.open_files) as api:
                asyncio.run(attack(api))


if __name__ == "__main__":
    main()
