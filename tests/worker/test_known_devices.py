"""The devices the worker's rules name are known to the ledger before their first command, so the
feedback webhook (which refuses telemetry of devices giftwheel does not drive) shows a configured
motor's heartbeats from the start; a rules reload that names a new motor makes it known too."""

from __future__ import annotations

from redis.asyncio import Redis

from cloud.ledger.store import Ledger
from cloud.worker.rules import Rules, parse_rules
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM
from tests.waiting import wait_until
from tests.worker.conftest import start_emulator, worker_running, worker_settings

FIRST = parse_rules(
    {
        "default_device": "motor_01",
        "rules": [{"name": "lions", "match": {"gift_name": ["Lion"]}, "device": "motor_03"}],
        "devices": {"motor_05": {"command_rounds_max": 10}},
    }
)
RELOADED = parse_rules({"default_device": "motor_01", "rules": [{"name": "all", "device": "motor_07"}]})


async def test_the_rules_devices_are_known_before_any_command_and_after_a_reload(
    redis_server: RedisServer, redis: Redis
) -> None:
    port = free_port()
    emulator = await start_emulator(port)
    ledger = Ledger(redis, streams=[EVENTS_STREAM], ttl_s=60)
    in_force: list[Rules] = [FIRST]
    try:
        async with worker_running(worker_settings(redis_server.url, port), lambda: in_force[0]):

            async def named(*devices: str) -> bool:
                return all([await ledger.knows_device(d) for d in devices])

            await wait_until(lambda: named("motor_01", "motor_03", "motor_05"), what="rules' devices known")
            assert not await ledger.knows_device("motor_07")
            assert not await ledger.knows_device("motor_99")
            in_force[0] = RELOADED
            await wait_until(lambda: named("motor_07"), what="a reloaded rules file's new device known")
            assert not await ledger.knows_device("motor_99")
    finally:
        await emulator.stop()
