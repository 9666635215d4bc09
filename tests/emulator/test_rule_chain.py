"""The shipped rule chain executed from its JSON: telemetry -> webhook POST as TbRestApiCallNode sends it,
node-type checks at load, ThingsBoard's templates, and the chain's structure as the docs describe it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.nodes import NODE_TYPES, bind
from devstack.tb_emulator.patterns import process_pattern
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rule_engine import ChainError, build_engine
from devstack.tb_emulator.server import SHIPPED_CHAIN
from tests.emulator.conftest import DEVICES, GATEWAY_TOKEN

SHIPPED = json.loads(SHIPPED_CHAIN.read_text())


class CaptureServer:
    """A tiny HTTP server recording each request (method, path, headers, body); answers `status` (or
    what `status_for` says for that request) after `delay_s`, and counts requests it holds at once."""

    def __init__(
        self,
        status: int = 200,
        *,
        delay_s: float = 0.0,
        status_for: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        self.status = status
        self.delay_s = delay_s
        self.status_for = status_for
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []  # every request, in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):  # the client gave up on a slow answer
            await self._serve(reader, writer)
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            method, path, _ = line.decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (header := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = header.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = {"method": method, "path": path, "headers": headers, "body": body}
            self.received.append(request)
            await self.requests.put(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.in_flight -= 1
            status = self.status if self.status_for is None else self.status_for(request)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
            await writer.drain()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/feedback/thingsboard"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[CaptureServer, str]]:
    capture = CaptureServer()
    async with capture as url:
        yield capture, url


async def test_motor_telemetry_is_posted_to_the_webhook_as_thingsboard_does(
    webhook: tuple[CaptureServer, str],
) -> None:
    capture, url = webhook
    async with (
        InProcessEmulator(DEVICES, webhook_url=url, webhook_secret="s3cret-s3cret-s3cret") as tb,
        RawMqttClient(tb.host, tb.mqtt_port) as gw,
    ):
        await gw.connect(GATEWAY_TOKEN)
        telemetry = {
            "motor_01": [
                {
                    "ts": 1700000000000,
                    "values": {"roundsCompleted": 3, "commandId": "c-0011223344", "state": "running"},
                },
                {"ts": 1700000000500, "values": {"roundsCompleted": 4, "commandDone": True}},
            ],
            "sensor": [{"temperature": 20}],  # not a motor profile: saved, not posted
        }
        assert await gw.publish("v1/gateway/telemetry", orjson.dumps(telemetry)) == 0
        posts = [await asyncio.wait_for(capture.requests.get(), 5) for _ in range(2)]
        await asyncio.sleep(0.1)
        assert capture.requests.empty()
        assert tb.hub.registry.by_name["sensor"].latest["temperature"][1] == 20
    # one POST per ts group (concurrent, like the REST node: order not guaranteed); the body is the
    # message data (the values), the metadata travels only in the headers the chain templates
    first, second = sorted(posts, key=lambda p: p["headers"]["x-telemetry-ts"])
    assert (first["method"], first["path"]) == ("POST", "/v1/feedback/thingsboard")
    assert first["body"] == b'{"roundsCompleted":3,"commandId":"c-0011223344","state":"running"}'
    assert second["body"] == b'{"roundsCompleted":4,"commandDone":true}'
    headers = first["headers"]
    assert headers["x-giftwheel-secret"] == "s3cret-s3cret-s3cret"
    assert (headers["x-device-name"], headers["x-device-type"], headers["x-telemetry-ts"]) == (
        "motor_01",
        "motor",
        "1700000000000",
    )
    assert headers["content-type"] == "application/json"
    assert second["headers"]["x-telemetry-ts"] == "1700000000500"


async def test_webhook_failures_are_recorded_not_fatal() -> None:
    capture = CaptureServer(status=401)
    async with capture as url, InProcessEmulator(DEVICES, webhook_url=url) as tb:
        async with RawMqttClient(tb.host, tb.mqtt_port) as gw:
            await gw.connect(GATEWAY_TOKEN)
            assert await gw.publish("v1/gateway/telemetry", b'{"motor_01": [{"roundsCompleted": 1}]}') == 0
            await asyncio.wait_for(capture.requests.get(), 5)
            await asyncio.sleep(0.1)
        [call] = tb.hub.http_poster.calls
        assert call["statusCode"] == 401
        assert tb.hub.root_chain.failures == 1
        main = tb.hub.queues.by_name["Main"].stats
        assert (main.retries, main.skipped) == (0, 1)  # Main's SKIP_ALL_FAILURES: dropped


def test_shipped_chain_uses_only_implemented_configuration_nodes() -> None:
    types = {node["type"] for node in SHIPPED["metadata"]["nodes"]}
    assert types <= set(NODE_TYPES)
    assert not any("Js" in t or "Script" in t or "Transform" in t for t in types)
    names = {n["name"]: i for i, n in enumerate(SHIPPED["metadata"]["nodes"])}
    routes = {(c["fromIndex"], c["type"], c["toIndex"]) for c in SHIPPED["metadata"]["connections"]}
    switch, origin, rpc, reply = (names[n] for n in ("Message Type Switch", "To target motor", "RPC to motor",
                                                     "Reply to dispatcher"))  # fmt: skip
    assert {(switch, "RPC Request from Device", origin), (origin, "Success", rpc), (rpc, "Success", reply),
            (rpc, "Failure", reply)} <= routes  # fmt: skip
    assert SHIPPED["metadata"]["nodes"][origin]["configuration"]["entityNamePattern"] == "$[params.device]"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda c: c["metadata"]["nodes"].append(
                {"type": "org.thingsboard.rule.engine.filter.TbJsFilterNode", "name": "Is dispatch"}
            ),
            "'Is dispatch' .*TbJsFilterNode",
        ),
        (lambda c: c["metadata"].update(firstNodeIndex=99), "firstNodeIndex"),
        (
            lambda c: c["metadata"]["connections"].append({"fromIndex": 0, "toIndex": 42, "type": "x"}),
            "outside",
        ),
        (lambda c: c["metadata"]["nodes"][3]["configuration"].update(originatorSource="TENANT"), "ENTITY"),
        (lambda c: c.pop("metadata"), "missing"),
    ],
)
def test_chain_errors_are_loud_and_name_the_problem(mutate: Any, message: str) -> None:
    chain = copy.deepcopy(SHIPPED)
    mutate(chain)
    with pytest.raises(ChainError, match=message):
        build_engine(chain, bind(None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("$[params.device]", "motor_01"),
        ("${deviceName}/$[params.rounds]", "dispatcher/10"),
        ("$[params.missing]", "$[params.missing]"),  # unresolved templates stay (TbNodeUtils)
        ("$[params]", "$[params]"),  # objects are not value nodes
        ("$[params.fast]", "true"),
        ("${nope}", "${nope}"),
    ],
)
def test_templates_follow_tb_node_utils(pattern: str, expected: str) -> None:
    data = {"method": "rotate", "params": {"device": "motor_01", "rounds": 10, "fast": True}}
    assert process_pattern(pattern, {"deviceName": "dispatcher"}, data) == expected
