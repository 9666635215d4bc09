"""The stock thingsboard-gateway's own MQTT connector, fed by sensors through a real Mosquitto.

A sensor message passes through the gateway as it is ("*" mapping), so what reaches the emulator is
exactly what a third-party sensor sent: a ``ts`` with a fraction, a ``ts`` as a numeric string, a
null-valued key. ThingsBoard takes all three (JsonConverter reads ts with Gson's getAsLong and
skips null values: devstack/tb_emulator/convert.py); an emulator that refused them would close the
gateway's session on each, the gateway would reconnect and send the same message again, forever,
and every sub-device RPC would end NO_ACTIVE_CONNECTION. This test pins that it does not.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from devstack.mosquitto_server import MosquittoServer
from devstack.tb_emulator.harness import EmulatorProcess
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.waiting import wait_until
from tests.emulator.conftest import DEVICES
from tests.emulator.gateway_process import gateway_process
from tests.emulator.gateway_runner import SENSOR_RPC_REQUEST, SENSOR_RPC_RESPONSE, SENSOR_TOPIC

pytestmark = pytest.mark.slow

SENSOR = "probe_01"  # a device ThingsBoard first hears of from the gateway
# (what the sensor publishes, the ts ThingsBoard stores it at, the values it stores)
READINGS: list[tuple[bytes, int, dict[str, float]]] = [
    (b'{"ts": 1700000000000.9, "values": {"temperature": 21.5, "humidity": null}}',
     1700000000000, {"temperature": 21.5}),
    (b'{"ts": "1700000000001", "values": {"temperature": 22.5}}',
     1700000000001, {"temperature": 22.5}),
    (b'{"ts": 1.700000000002e12, "values": {"temperature": 23.5, "battery": null}}',
     1700000000002, {"temperature": 23.5}),
]  # fmt: skip


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    with MosquittoServer() as server:
        yield server


@pytest.fixture
def tb_process() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(DEVICES) as emulator:
        yield emulator


@pytest.fixture
def gateway(
    tb_process: EmulatorProcess, broker: MosquittoServer, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with gateway_process(tb_process, tmp_path, sensor_broker_port=broker.port) as proc:
        yield proc


def _gateway_sessions(tb: EmulatorProcess) -> list[str]:
    return [s["sessionId"] for s in tb.sessions() if s["device"] == "pi-gateway-01"]


async def test_sensor_data_thingsboard_accepts_keeps_the_gateway_connected(
    tb_process: EmulatorProcess, broker: MosquittoServer, gateway: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    try:  # the echo connector's heartbeat: the gateway is connected and sending
        wait_until(lambda: tb_process.latest_telemetry("motor_01").get("heartbeat"), 45)
    except TimeoutError:
        pytest.fail("gateway never connected: " + (tmp_path / "gateway.log").read_text()[-3000:])
    [session] = _gateway_sessions(tb_process)
    connects = tb_process.stats()["connects"]

    async with RawMqttClient(broker.host, broker.port) as sensor:
        assert (await sensor.connect(None, client_id=SENSOR)).reason_code == 0
        await sensor.subscribe(SENSOR_RPC_REQUEST.format(device=SENSOR, method="+", request_id="+"))
        for payload, _, _ in READINGS:
            assert await sensor.publish(SENSOR_TOPIC.format(device=SENSOR), payload) == 0

        def stored() -> list[tuple[int, dict[str, float]]]:
            if not any(d["name"] == SENSOR for d in tb_process.devices()):
                return []  # created when the gateway first sends for it
            return [(g["ts"], g["values"]) for g in tb_process.timeseries(SENSOR)]

        try:
            wait_until(lambda: len(stored()) >= len(READINGS), 30)
        except TimeoutError:
            pytest.fail(f"stored {stored()}; gateway log: " + (tmp_path / "gateway.log").read_text()[-3000:])
        assert stored() == [(ts, values) for _, ts, values in READINGS]

        # A two-way RPC to the sensor: the gateway publishes it to the broker, the sensor answers
        rpc = asyncio.create_task(
            asyncio.to_thread(tb_process.send_rpc, SENSOR, "getInterval", {"unit": "s"})
        )
        request = await sensor.next_message(timeout_s=15)
        method, request_id = request.topic.rsplit("/", 2)[-2:]
        assert (method, orjson.loads(request.payload)) == ("getInterval", {"unit": "s"})
        response = SENSOR_RPC_RESPONSE.format(device=SENSOR, method=method, request_id=request_id)
        await sensor.publish(response, b'{"interval": 5}')
        assert await rpc == (200, {"interval": 5})

    # the echo connector's motor answers too: the gateway's session is the one it started with
    status, reply = tb_process.send_rpc("motor_01", "rotate", {"commandId": "c-1", "rounds": 2})
    assert (status, reply) == (200, {"accepted": True, "commandId": "c-1", "queuedRounds": 2})
    assert _gateway_sessions(tb_process) == [session]
    assert tb_process.stats()["connects"] == connects
    assert gateway.poll() is None
