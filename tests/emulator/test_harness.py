"""The subprocess harness other areas build on: start, HTTP helpers, kill -9, restart on the same ports."""

from __future__ import annotations

import orjson
import pytest

from devstack.tb_emulator.harness import EmulatorError, EmulatorProcess
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_process_serves_mqtt_and_http_and_survives_kill_and_restart() -> None:
    with EmulatorProcess() as tb:
        assert tb.health()["status"] == "ok"
        async with RawMqttClient(tb.host, tb.mqtt_port) as gw:
            assert (await gw.connect("pi-gateway-01-dev-token")).reason_code == 0
            body = {"motor_01": [{"ts": 1700000000000, "values": {"roundsCompleted": 3}}]}
            assert await gw.publish("v1/gateway/telemetry", orjson.dumps(body)) == 0
            assert tb.is_connected("pi-gateway-01")
            assert tb.is_connected("motor_01")  # implicitly, through the gateway
        assert wait_until(lambda: tb.latest_telemetry("motor_01")) == {"roundsCompleted": 3}
        assert wait_until(lambda: not tb.is_connected("motor_01"))
        ports = (tb.mqtt_port, tb.http_port)
        tb.kill()
        assert not tb.running
        tb.start()
        assert (tb.mqtt_port, tb.http_port) == ports
        # in-memory state is gone after kill -9, as a test double should make obvious
        assert tb.latest_telemetry("motor_01") == {}


def test_inline_devices_and_bad_chain_fail_loudly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chain = tmp_path / "chain.json"
    chain.write_text(
        '{"ruleChain": {"name": "x"}, "metadata": {"firstNodeIndex": 0, "connections": [],'
        ' "nodes": [{"type": "org.thingsboard.rule.engine.filter.TbJsFilterNode", "name": "Script"}]}}'
    )
    tb = EmulatorProcess([{"name": "d", "token": "t"}], rule_chain=chain)
    with pytest.raises(
        EmulatorError, match=r"'Script' \(org\.thingsboard\.rule\.engine\.filter\.TbJsFilterNode\)"
    ):
        tb.start()
    tb.close()
