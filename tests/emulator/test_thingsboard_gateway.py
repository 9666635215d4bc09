"""The real thingsboard-gateway service against the emulator: connect, sub-device, RPC both ways.

The gateway counts itself connected only after its getSessionLimits client RPC is answered, sends
v1/gateway/connect for a device it has data for, gets the dispatcher's RPC on v1/gateway/rpc
through the shipped rule chain, and its motor telemetry reaches the webhook. It runs in its own
process (its constructor blocks until the first connect and only SIGINT stops it cleanly).
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from devstack.tb_emulator.harness import EmulatorProcess
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.waiting import wait_until
from tests.emulator.conftest import DEVICES, DISPATCHER_TOKEN
from tests.emulator.gateway_process import gateway_process

pytestmark = pytest.mark.slow


class WebhookCapture(ThreadingHTTPServer):
    """Records the REST API call node's POSTs (path, headers, body) on a free loopback port."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                capture.posts.put((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def webhook() -> Iterator[WebhookCapture]:
    server = WebhookCapture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def tb_process(webhook: WebhookCapture) -> Iterator[EmulatorProcess]:
    url = f"http://127.0.0.1:{webhook.server_address[1]}/v1/feedback/thingsboard"
    with EmulatorProcess(DEVICES, webhook_url=url, webhook_secret="gateway-test-secret-0123") as emulator:
        yield emulator


@pytest.fixture
def gateway_service(tb_process: EmulatorProcess, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with gateway_process(tb_process, tmp_path) as proc:
        yield proc


async def test_gateway_registers_motor_and_answers_dispatcher_rpc(
    tb_process: EmulatorProcess, gateway_service: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    def motor_on_gateway() -> bool:
        return any("motor_01" in s["subDevices"] for s in tb_process.sessions())

    try:
        wait_until(motor_on_gateway, 30)
        wait_until(lambda: tb_process.latest_telemetry("motor_01").get("heartbeat"), 15)
    except TimeoutError:
        pytest.fail("gateway never announced motor_01: " + (tmp_path / "gateway.log").read_text()[-3000:])
    gateway_session = next(s for s in tb_process.sessions() if s["device"] == "pi-gateway-01")
    assert gateway_session["mqttVersion"] == "5"
    assert {"v1/gateway/rpc", "v1/gateway/attributes", "v1/devices/me/rpc/request/+"} <= set(
        gateway_session["subscriptions"]
    )

    async with RawMqttClient(tb_process.host, tb_process.mqtt_port) as dispatcher:
        await dispatcher.connect(DISPATCHER_TOKEN)
        await dispatcher.subscribe("v1/devices/me/rpc/response/+")
        body = {
            "method": "rotate",
            "params": {"device": "motor_01", "commandId": "c-00112233445566", "rounds": 4},
        }
        assert await dispatcher.publish("v1/devices/me/rpc/request/1", orjson.dumps(body)) == 0
        reply = await dispatcher.next_message(timeout_s=15)
    assert reply.topic == "v1/devices/me/rpc/response/1"
    assert orjson.loads(reply.payload) == {
        "accepted": True,
        "commandId": "c-00112233445566",
        "queuedRounds": 4,
    }
    [record] = tb_process.rpc_states(device="motor_01")
    assert (record["method"], record["status"]) == ("rotate", "SUCCESSFUL")
    assert gateway_service.poll() is None


async def test_gateway_telemetry_reaches_the_webhook(
    tb_process: EmulatorProcess, gateway_service: subprocess.Popen[bytes], webhook: WebhookCapture
) -> None:
    path, headers, body = webhook.posts.get(timeout=30)
    assert path == "/v1/feedback/thingsboard"
    assert (headers["x-device-name"], headers["x-device-type"]) == ("motor_01", "motor")
    assert headers["x-giftwheel-secret"] == "gateway-test-secret-0123"
    assert int(headers["x-telemetry-ts"]) > 1_700_000_000_000
    assert set(orjson.loads(body)) == {"heartbeat"}
