"""Fan-out benchmark: N WebSocket viewers, motor feedback posted at a fixed rate, delivery and latency.

Run:  .venv/bin/python -m bench.fanout [--clients 1000 5000 10000] [--rate 5] [--duration 20]
                                      [--deflate] [--socketio] [--gifts-per-s 0]

Everything on this machine: one redis-server, `--instances` real `giftwheel api` processes sharing it
(viewers spread over them, as behind a load balancer; feedback posted to the first, so every other
instance gets it through Redis), and `--client-procs` processes holding the viewers. The viewers
speak the WebSocket protocol with a minimal client (handshake, frames, pong) so the load generator
costs little of the CPU the servers need; with --deflate they offer permessage-deflate as browsers do
and the API grants it; with --socketio they are Socket.IO clients (engine.io 4 over WebSocket, the
overlay's transport) instead. Latency: viewer receive time minus the telemetry ts the
poster stamps when it sends the webhook (same clock), i.e. webhook -> ledger -> Redis -> viewer.
Joined in: from starting the viewer processes until every viewer has its join state; join ms, per
viewer: from opening its TCP connection (at most 100 joining at a time per viewer process) until its
join state arrives (handshake, registration and the state snapshot). Memory per viewer: the API
processes' RSS after the viewers joined minus before, over the viewers (a second size in the same
invocation reuses what the first left, so measure one size per invocation), and apart from it the
viewer processes' own growth (the load generator).
With --gifts-per-s, gifts are also posted to ingest (POST /v1/events, to each API in turn) and the
viewers count the gift.accepted announcements: delivery and latency from the gift's timestamp.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import resource
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import orjson
from redis.asyncio import Redis

from bench.proc_stats import cpu_seconds, rss_mib
from cloud.ledger.store import Ledger
from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from giftwheel.contracts import event_streams
from giftwheel.contracts.motor import command_id_for

API_KEY = "bench-key-0123456789abcdef"
SECRET = "bench-feedback-secret-0123456789"
# Descriptors a process keeps for other things than viewers (Redis, logs, the interpreter's own).
FD_HEADROOM = 200


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the viewers ------------------------------------------------------------------------------


@dataclass
class Tally:
    progress: int = 0
    done: int = 0
    gifts: int = 0


@dataclass
class ProcResult:
    connected: int
    rss_before_mb: float = 0.0
    rss_joined_mb: float = 0.0
    join_errors: dict[str, int] = field(default_factory=dict)
    progress_counts: list[int] = field(default_factory=list)
    done_counts: list[int] = field(default_factory=list)
    gift_counts: list[int] = field(default_factory=list)
    progress_ms: list[float] = field(default_factory=list)
    done_ms: list[float] = field(default_factory=list)
    gift_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)


_DIGITS = frozenset(b"0123456789")


@dataclass(frozen=True)
class Dialect:
    """Where a viewer connects and how the frames of one event begin (for the fast path)."""

    path: str
    progress: bytes
    done: bytes
    socketio: bool


PLAIN = Dialect("/v1/realtime", b'{"event":"motor.progress",', b'{"event":"motor.done",', socketio=False)
SOCKETIO = Dialect(
    "/socket.io/?EIO=4&transport=websocket", b'42["motor.progress",', b'42["motor.done",', socketio=True
)


@dataclass(frozen=True)
class ViewerOptions:
    dialect: Dialect
    deflate: bool


class Viewer(asyncio.Protocol):
    """A WebSocket client reduced to what a viewer needs: read text frames, answer pings."""

    def __init__(self, host: str, options: ViewerOptions, result: ProcResult) -> None:
        offer = (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if options.deflate
            else ""
        )
        self._dialect = options.dialect
        self._request = (
            f"GET {options.dialect.path} HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        ).encode()
        # The server's compressor keeps its context between messages, so one inflater per viewer.
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tally = Tally()
        self._result = result

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self._transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(f"closed before joining: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self._buffer.startswith(b"HTTP/1.1 101"):
                self.joined.set_exception(ConnectionError(bytes(self._buffer[:60]).decode(errors="replace")))
                return
            del self._buffer[: end + 4]
            self._upgraded = True
        self._frames()

    def _frames(self) -> None:
        buf = self._buffer
        while len(buf) >= 2:
            opcode, compressed, length, start = buf[0] & 0x0F, buf[0] & 0x40, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            if compressed:  # RFC 7692: the tail the compressor's sync flush left off
                payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 0x1:
                self._message(payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8 and self._transport is not None:
                self._transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        """A short frame (pongs, engine.io's few bytes): at most 125 bytes."""
        mask = os.urandom(4)
        payload = payload[:125]
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self._transport is not None
        self._transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _message(self, payload: bytes) -> None:
        now_ms = time.time() * 1000
        # The common frame is one event: read its name and ts without decoding all of it, so the
        # load generator leaves more of the shared CPU to the servers it measures.
        progress, done = self._dialect.progress, self._dialect.done
        if payload.startswith(progress) or payload.startswith(done):
            start = payload.rfind(b'"ts":') + 5
            end = start
            while payload[end] in _DIGITS:
                end += 1
            latency = now_ms - int(payload[start:end])
            if payload.startswith(progress):
                self.tally.progress += 1
                self._result.progress_ms.append(latency)
            else:
                self.tally.done += 1
                self._result.done_ms.append(latency)
            return
        if not self._dialect.socketio:
            parsed = orjson.loads(payload)
            for message in parsed if isinstance(parsed, list) else [parsed]:
                self._event(message["event"], message["data"], now_ms)
        elif payload.startswith(b"42"):  # a Socket.IO event
            name, data = orjson.loads(payload[2:])
            self._event(name, data, now_ms)
        elif payload.startswith(b"0"):  # engine.io open: join the main namespace
            self._send(0x1, b"40")
        elif payload == b"2":  # engine.io ping
            self._send(0x1, b"3")

    def _event(self, name: str, data: Any, now_ms: float) -> None:
        if name == "state":
            if not self.joined.done():
                self.joined.set_result(None)
        elif name == "motor.progress":
            self.tally.progress += 1
            self._result.progress_ms.append(now_ms - data["ts"])
        elif name == "motor.done":
            self.tally.done += 1
            self._result.done_ms.append(now_ms - data["ts"])
        elif name == "gift.accepted":
            self.tally.gifts += 1
            self._result.gift_ms.append(now_ms - data["ts"])


async def hold_viewers(
    urls: list[str], count: int, options: ViewerOptions, ready: Any, stop: MpEvent, results: Any
) -> None:
    result = ProcResult(connected=0, rss_before_mb=rss_mib(os.getpid()))
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(100)
    viewers: list[Viewer] = []

    async def join(url: str) -> None:
        parts = urlsplit(url)
        async with gate:
            began = time.perf_counter()
            try:
                _, viewer = await loop.create_connection(
                    lambda: Viewer(parts.netloc, options, result),
                    parts.hostname or "",
                    parts.port or 80,
                )
                await asyncio.wait_for(viewer.joined, 30)
            except (OSError, TimeoutError, ConnectionError) as exc:
                kind = f"{type(exc).__name__}: {str(exc)[:60]}"
                result.join_errors[kind] = result.join_errors.get(kind, 0) + 1
                return
            result.join_ms.append((time.perf_counter() - began) * 1000)
            viewers.append(viewer)

    await asyncio.gather(*(join(urls[i % len(urls)]) for i in range(count)))
    result.connected = len(viewers)
    result.rss_joined_mb = rss_mib(os.getpid())
    ready.put(result.connected)
    await loop.run_in_executor(None, stop.wait)
    result.progress_counts = [v.tally.progress for v in viewers]
    result.done_counts = [v.tally.done for v in viewers]
    result.gift_counts = [v.tally.gifts for v in viewers]
    results.put(orjson.dumps(result.__dict__))


def viewer_process(
    urls: list[str], count: int, options: ViewerOptions, ready: Any, stop: MpEvent, results: Any
) -> None:
    raise_open_files()
    try:
        import uvloop  # the loop the API runs on too

        uvloop.run(hold_viewers(urls, count, options, ready, stop, results))
    except ImportError:
        asyncio.run(hold_viewers(urls, count, options, ready, stop, results))


# -- the poster -------------------------------------------------------------------------------


async def open_loop(rate: float, duration_s: float, one: Callable[[int], Coroutine[Any, Any, None]]) -> int:
    """Start one(1), one(2), ... at a fixed rate for duration_s, whatever the answers (open loop);
    wait for them all and return how many were started."""
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    seq = 0
    while time.monotonic() - started < duration_s:
        seq += 1
        tasks.append(asyncio.create_task(one(seq)))
        await asyncio.sleep(max(0.0, started + seq / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    return seq


async def issue_commands(redis_url: str, count: int) -> list[str]:
    """The commands the feedback reports on, in the ledger as the worker puts them there: the webhook
    shows only motors and commands the ledger knows, and a command's done only once, so each done
    closes a command of its own (fresh ones every run)."""
    client = Redis.from_url(redis_url)
    run = os.urandom(4).hex()
    stream = event_streams(1)[0]
    try:
        ledger = Ledger(client, streams=[stream], ttl_s=3_600)
        commands = []
        for n in range(count):
            event = f"bench:fanout:{run}:{n}"
            await ledger.assign(stream, "motor_01", {event: 1}, cap=1, deadline_ms=0)
            commands.append(command_id_for([event]))
        return commands
    finally:
        await client.aclose()


async def post_feedback(
    url: str, redis_url: str, rate: float, duration_s: float, done_every: int
) -> tuple[int, int, int]:
    """Webhook calls at a fixed rate (open loop); every `done_every`-th closes the command the calls
    before it reported on, and the next ones report on the next command."""
    # The open loop starts at most one call past rate * duration.
    commands = await issue_commands(redis_url, int(rate * duration_s + 1) // done_every + 1)
    failures = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one(seq: int) -> None:
            nonlocal failures
            finishing = seq % done_every == 0
            body = {
                "commandId": commands[(seq - 1) // done_every],
                "commandRounds": seq if finishing else 1_000_000,
                "commandRoundsDone": seq,
                "commandDone": finishing,
                "roundsCompleted": seq,
                "queuedRounds": 0 if finishing else 1_000_000 - seq,
                "state": "idle" if finishing else "running",
            }
            headers = {
                "X-Giftwheel-Secret": SECRET,
                "X-Device-Name": "motor_01",
                "X-Telemetry-Ts": str(int(time.time() * 1000)),
                "Content-Type": "application/json",
            }
            response = await client.post(
                "/v1/feedback/thingsboard", content=orjson.dumps(body), headers=headers
            )
            if response.status_code != 200:
                failures += 1

        calls = await open_loop(rate, duration_s, one)
    done = calls // done_every
    return calls - done, done, failures


async def post_gifts(urls: list[str], rate: float, duration_s: float) -> tuple[int, int]:
    """Single gift POSTs at a fixed rate (open loop), each to the next API; returns (accepted, failed)."""
    if rate <= 0:
        return 0, 0
    accepted = failures = 0
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    run = os.urandom(4).hex()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=10)) for u in urls]

        async def one(seq: int) -> None:
            nonlocal accepted, failures
            gift = {
                "event": "gift",
                "platform": "tiktok",
                "eventId": f"tiktok:fanout-{run}-{seq}",
                "userId": f"viewer{seq % 97}",
                "giftName": "Rose",
                "diamond": 1,
                "quantity": 1,
                "timestamp": int(time.time() * 1000),
            }
            response = await clients[seq % len(clients)].post(
                "/v1/events", content=orjson.dumps(gift), headers=headers
            )
            if response.status_code == 202:
                accepted += 1
            else:
                failures += 1

        await open_loop(rate, duration_s, one)
    return accepted, failures


async def post_both(
    urls: list[str], redis_url: str, args: argparse.Namespace
) -> tuple[tuple[int, int, int], tuple[int, int]]:
    feedback, gifts = await asyncio.gather(
        post_feedback(urls[0], redis_url, args.rate, args.duration, args.done_every),
        post_gifts(urls, args.gifts_per_s, args.duration),
    )
    return feedback, gifts


# -- one run ----------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run(clients: int, apis: list[ApiProcess], redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    urls = [api.url for api in apis]
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    # Each viewer is one descriptor in a viewer process and one in an API process.
    per_process = raise_open_files() - FD_HEADROOM
    if -(-clients // len(apis)) > per_process:
        print(
            f"warning: {clients:,} viewers over {len(apis)} API processes pass {per_process:,} each",
            file=sys.stderr,
        )
    holders = max(args.client_procs, -(-clients // per_process))
    shares = [clients // holders + (i < clients % holders) for i in range(holders)]
    options = ViewerOptions(SOCKETIO if args.socketio else PLAIN, deflate=args.deflate)
    procs = [
        ctx.Process(target=viewer_process, args=(urls, share, options, ready, stop, results))
        for share in shares
    ]
    server_rss_before = rss_mib(*(api.pid for api in apis))
    joining = time.monotonic()
    for proc in procs:
        proc.start()
    try:
        connected = sum(ready.get(timeout=300) for _ in procs)
        join_s = time.monotonic() - joining
        time.sleep(1.0)
        server_rss = rss_mib(*(api.pid for api in apis))
        servers_before = cpu_seconds(*(api.pid for api in apis))
        viewers_before = cpu_seconds(*(proc.pid for proc in procs))
        (posted_progress, posted_done, failures), (gifts_accepted, gift_failures) = asyncio.run(
            post_both(urls, redis_url, args)
        )
        load_1min = os.getloadavg()[0]
        time.sleep(args.grace)
        server_cpu = cpu_seconds(*(api.pid for api in apis)) - servers_before
        viewer_cpu = cpu_seconds(*(proc.pid for proc in procs)) - viewers_before
        stop.set()
        parts = [ProcResult(**orjson.loads(results.get(timeout=120))) for _ in procs]
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    progress_ms = [ms for p in parts for ms in p.progress_ms]
    done_ms = [ms for p in parts for ms in p.done_ms]
    done_counts = [c for p in parts for c in p.done_counts]
    progress_counts = [c for p in parts for c in p.progress_counts]
    gift_counts = [c for p in parts for c in p.gift_counts]
    gift_ms = [ms for p in parts for ms in p.gift_ms]
    join_ms = [ms for p in parts for ms in p.join_ms]
    viewer_rss_growth = sum(p.rss_joined_mb - p.rss_before_mb for p in parts)
    return {
        "clients": clients,
        "connected": connected,
        "join_s": join_s,
        "join_p50_ms": pct(join_ms, 50),
        "join_p99_ms": pct(join_ms, 99),
        "join_max_ms": max(join_ms, default=float("nan")),
        "viewer_processes": holders,
        "join_errors": {
            k: sum(p.join_errors.get(k, 0) for p in parts) for p0 in parts for k in p0.join_errors
        },
        "posted_progress": posted_progress,
        "posted_done": posted_done,
        "webhook_failures": failures,
        "gifts_accepted": gifts_accepted,
        "gift_failures": gift_failures,
        "gift_delivery": sum(gift_counts) / max(1, connected * gifts_accepted),
        "gift_p50_ms": pct(gift_ms, 50),
        "gift_p99_ms": pct(gift_ms, 99),
        "progress_delivery": sum(progress_counts) / max(1, connected * posted_progress),
        "done_delivery": sum(done_counts) / max(1, connected * posted_done),
        "viewers_missing_a_done": sum(1 for c in done_counts if c < posted_done),
        "p50_ms": pct(progress_ms + done_ms, 50),
        "p99_ms": pct(progress_ms + done_ms, 99),
        "max_ms": max(progress_ms + done_ms, default=float("nan")),
        "done_p99_ms": pct(done_ms, 99),
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_frame": 1e6 * server_cpu / max(1, sum(progress_counts) + sum(done_counts)),
        "viewer_cpu_us_per_frame": 1e6 * viewer_cpu / max(1, sum(progress_counts) + sum(done_counts)),
        "server_rss_mb": server_rss,
        "server_kib_per_viewer": (server_rss - server_rss_before) * 1024 / max(1, connected),
        "viewer_kib_per_viewer": viewer_rss_growth * 1024 / max(1, connected),
        "load_1min": load_1min,
        "mean_ms": statistics.fmean(progress_ms + done_ms) if progress_ms or done_ms else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1_000, 5_000, 10_000])
    parser.add_argument("--rate", type=float, default=5.0, help="webhook calls per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of posting per run")
    parser.add_argument("--done-every", type=int, default=5, help="every n-th call finishes a command")
    parser.add_argument("--instances", type=int, default=2, help="giftwheel api processes")
    parser.add_argument("--client-procs", type=int, default=2, help="processes holding the viewers")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for stragglers")
    parser.add_argument(
        "--deflate", action="store_true", help="viewers offer permessage-deflate and the API grants it"
    )
    parser.add_argument(
        "--socketio", action="store_true", help="Socket.IO viewers instead of plain WebSocket"
    )
    parser.add_argument(
        "--gifts-per-s",
        type=float,
        default=0.0,
        help="also post gifts to ingest; viewers count announcements",
    )
    args = parser.parse_args()
    limit = raise_open_files()
    print(f"open-file limit {limit}, {os.cpu_count()} CPUs", file=sys.stderr)
    env = {
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_FEEDBACK__SECRET": SECRET,
        "GIFTWHEEL_REALTIME__MAX_CONNECTIONS": "50000",
        "GIFTWHEEL_LOG_LEVEL": "ERROR",
        "GIFTWHEEL_REALTIME__PERMESSAGE_DEFLATE": "true" if args.deflate else "false",
    }
    rows = []
    with RedisServer() as redis, contextlib.ExitStack() as stack:
        env["GIFTWHEEL_REDIS_URL"] = redis.url
        apis = [stack.enter_context(ApiProcess(env, name=f"api-{i}")) for i in range(args.instances)]
        for clients in args.clients:
            row = run(clients, apis, redis.url, args)
            rows.append(row)
            print(orjson.dumps(row).decode(), file=sys.stderr)
    print(
        f"\nfeedback at {args.rate:g}/s for {args.duration:g} s (every {args.done_every}th a done), "
        f"{args.instances} API processes on one Redis, {rows[0]['viewer_processes']} viewer processes "
        "(more for more viewers than the open-file limit lets one hold), "
        f"{'Socket.IO' if args.socketio else 'plain WebSocket'} viewers, "
        f"permessage-deflate {'on' if args.deflate else 'off'}\n"
    )
    print(
        "| viewers | connected | joined in s | join p50 / p99 / max ms | progress delivered | done delivered "
        "| p50 ms | p99 ms | max ms | server CPU µs/frame | viewer CPU µs/frame | server RSS MiB "
        "| server KiB/viewer | viewer-process KiB/viewer | load (1 min) |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        delivered = f"{r['progress_delivery']:.4f} | {r['done_delivery']:.4f}"
        latency = f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f}"
        cpu = f"{r['server_cpu_us_per_frame']:.0f} | {r['viewer_cpu_us_per_frame']:.0f}"
        rss = (
            f"{r['server_rss_mb']:.0f} | {r['server_kib_per_viewer']:.1f} | {r['viewer_kib_per_viewer']:.1f}"
        )
        joined = (
            f"{r['connected']:,} | {r['join_s']:.1f} "
            f"| {r['join_p50_ms']:.0f} / {r['join_p99_ms']:.0f} / {r['join_max_ms']:.0f}"
        )
        load = f"{r['load_1min']:.1f}"
        print(f"| {r['clients']:,} | {joined} | {delivered} | {latency} | {cpu} | {rss} | {load} |")
    if args.gifts_per_s > 0:
        print(f"\ngifts posted at {args.gifts_per_s:g}/s, announcements as the viewers saw them\n")
        print(
            "| viewers | gifts accepted | failed | announcements delivered | p50 ms | p99 ms | server CPU s |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['clients']:,} | {r['gifts_accepted']:,} | {r['gift_failures']} "
                f"| {r['gift_delivery']:.4f} | {r['gift_p50_ms']:.0f} | {r['gift_p99_ms']:.0f} "
                f"| {r['server_cpu_s']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
