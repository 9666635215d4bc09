"""The worker past ThingsBoard's 16-bit packet id wrap (the emulator's sessions start near it): RPC
responses come at QoS 0, so the dispatcher's session never sees a packet id to acknowledge, every
command is answered and no session is replaced."""

from __future__ import annotations

from redis.asyncio import Redis

from cloud.ledger import CommandState
from cloud.worker.dispatcher import RESPONSE_FILTER
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.motor import command_id_for
from tests.waiting import wait_until
from tests.worker.conftest import GATEWAY_TOKEN, MOTORS, enqueue, gift, worker_running, worker_settings
from tests.worker.test_dispatch import RULES

COMMANDS = 8  # each takes a msg id on the gateway's and the dispatcher's session: both pass 65,535


def sessions_of(emulator: Emulator) -> dict[str, tuple[str, dict[str, int], int]]:
    """Device name -> (session id, subscriptions, last msg id) of every open session."""
    views = (session.view() for session in emulator.hub.sessions.values())
    return {v["device"]: (v["sessionId"], v["subscriptions"], v["msgId"]) for v in views}


async def test_commands_flow_past_the_packet_id_wrap_on_the_same_sessions(
    redis_server: RedisServer, redis: Redis, emulator: Emulator
) -> None:
    emulator.hub.faults.msg_id_start = 65_532
    pi = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    await pi.start()
    settings = worker_settings(redis_server.url, emulator.mqtt_port)
    try:
        async with worker_running(settings, RULES) as worker:
            await wait_until(lambda: len(sessions_of(emulator)) == 2, what="dispatcher connected")
            before = sessions_of(emulator)
            for _ in range(COMMANDS):
                event = gift(gift_name="Lion", diamond=1)
                command_id = command_id_for([event.event_id])
                await enqueue(redis, EVENTS_STREAM, [event])

                async def delivered(command_id: str = command_id) -> bool:
                    command = await worker.ledger.find(command_id)
                    return command is not None and command.state is CommandState.DELIVERED

                await wait_until(delivered, what=f"command {command_id} delivered")
            after = sessions_of(emulator)
    finally:
        await pi.close()
    assert len(pi.rotates()) == COMMANDS  # each turned once
    dispatcher = next(name for name in after if name != "pi-gateway-01")
    assert after[dispatcher][1][RESPONSE_FILTER] == 0
    assert {name: view[0] for name, view in after.items()} == {name: view[0] for name, view in before.items()}
    assert all(msg_id > 65_536 for _, _, msg_id in after.values())
