"""The real thingsboard-gateway + our connector past ThingsBoard's 16-bit packet id wrap.

ThingsBoard sends the 65,536th publish on a session with packet id 0 and closes the session of a
client that PUBACKs it (netty MqttDecoder "invalid messageId"); paho would, so edge.compat.tb_gateway
keeps it from acknowledging id 0. The emulator starts the gateway's session near the wrap
(``msg_id_start``, test-only): every RPC across it is answered, every command turns once, and the
gateway keeps its one session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.edge_process import GATEWAY_TOKEN, recorded_steps
from devstack.redis_server import RedisServer
from devstack.tb_emulator.harness import EmulatorProcess
from tests.edge.test_gateway_e2e import SPR, rpc, start_daemon, wait_for, wait_for_steps

pytestmark = pytest.mark.slow

COMMANDS = 12


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    gateway = {"name": "pi-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True}
    with EmulatorProcess([gateway]) as emu:
        yield emu


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


def gateway_session(emulator: EmulatorProcess) -> dict[str, Any]:
    (session,) = [s for s in emulator.sessions() if s["device"] == "pi-01"]
    return session


def test_rpcs_across_the_wrap_are_answered_on_one_gateway_session(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess
) -> None:
    emulator.set_faults(msg_id_start=65_530)
    with start_daemon(tmp_path, aof_redis.url, emulator):
        before = gateway_session(emulator)
        assert before["msgId"] < 65_535  # the wrap (the 65,536th publish) is still ahead
        for n in range(COMMANDS):
            command_id = f"c-{0xABC00000 + n:08x}"
            code, reply = rpc(emulator, "motor_01", "rotate", {"commandId": command_id, "rounds": 1})
            assert (code, reply.get("commandId"), reply.get("duplicate")) == (200, command_id, False)
        wait_for(lambda: rpc(emulator, "motor_01", "status", {})[1]["commandsDone"] == COMMANDS,
                 what="every command done")  # fmt: skip
        wait_for_steps(tmp_path, "motor_01", COMMANDS * SPR)
        assert recorded_steps(tmp_path, "motor_01") == COMMANDS * SPR  # each turned exactly once
        after = gateway_session(emulator)
    assert after["sessionId"] == before["sessionId"]
    assert after["msgId"] > 65_536  # packet id 0 went out to the gateway, and the session held
