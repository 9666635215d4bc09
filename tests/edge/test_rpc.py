"""RPC methods over the ledger and controllers: replies on the wire contract, errors with a reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from devstack.redis_server import RedisServer
from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.connectors.giftwheel_connector import Rpc, RpcDispatch
from edge.motor.clock import ScaledClock
from edge.motor.controller import MotionProfile, MotorController
from edge.motor.simulated import SimulatedDriver
from edge.rpc import RpcService
from giftwheel.contracts.motor import (
    CommandOutcome,
    ErrorReply,
    RotateReply,
    RpcError,
    StatusReply,
    StopReply,
)


@pytest.fixture
def service(ledger: CommandLedger) -> Iterator[RpcService]:
    clock = ScaledClock(50.0)
    motor = MotorController(
        "motor_01",
        SimulatedDriver(clock),
        ledger,
        MotionProfile(100, 1000.0, 10_000.0),
        clock,
        idle_poll_s=0.05,
    )
    motor.start()
    yield RpcService({"motor_01": motor}, ledger)
    motor.close()


def test_rotate_then_duplicate_then_status(service: RpcService, ledger: CommandLedger) -> None:
    reply = RotateReply.model_validate(
        service.handle("motor_01", "rotate", {"commandId": "c-0000aaaa", "rounds": 2})
    )
    assert (reply.accepted, reply.queued_rounds, reply.duplicate) == (True, 2, False)
    again = RotateReply.model_validate(
        service.handle("motor_01", "rotate", {"commandId": "c-0000aaaa", "rounds": 2})
    )
    assert again.duplicate
    deadline = time.monotonic() + 5
    while ledger.status("motor_01").commands_done < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    status = StatusReply.model_validate(service.handle("motor_01", "status", None))
    assert (status.rounds_completed, status.commands_done, status.queued_rounds) == (2, 1, 0)


def test_a_reask_queues_nothing_and_says_where_the_command_stands(
    service: RpcService, ledger: CommandLedger
) -> None:
    reask = {"commandId": "c-0000dddd", "rounds": 2, "reask": True}
    unknown = ErrorReply.model_validate(service.handle("motor_01", "rotate", reask))
    assert unknown.error == RpcError.UNKNOWN_COMMAND.value
    first = service.handle("motor_01", "rotate", {"commandId": "c-0000dddd", "rounds": 2})
    assert "outcome" not in first  # an older worker's strict reply model refuses the key
    deadline = time.monotonic() + 5
    while ledger.status("motor_01").commands_done < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    done = RotateReply.model_validate(service.handle("motor_01", "rotate", reask))
    assert (done.duplicate, done.outcome) == (True, CommandOutcome.DONE)
    status = ledger.status("motor_01")
    assert (status.rounds_completed, status.commands_done, status.queued_rounds) == (2, 1, 0)


def test_a_reask_on_a_held_motor_says_pending_and_a_stop_makes_it_cleared(
    service: RpcService, ledger: CommandLedger
) -> None:
    service.handle("motor_01", "hold", {})
    service.handle("motor_01", "rotate", {"commandId": "c-0000eeee", "rounds": 3})
    reask = {"commandId": "c-0000eeee", "rounds": 3, "reask": True}
    held = RotateReply.model_validate(service.handle("motor_01", "rotate", reask))
    assert (held.outcome, held.held, held.queued_rounds) == (CommandOutcome.PENDING, True, 3)
    assert ledger.status("motor_01").queued_rounds == 3  # queued once, not again
    service.handle("motor_01", "stop", {})
    cleared = RotateReply.model_validate(service.handle("motor_01", "rotate", reask))
    assert (cleared.outcome, cleared.queued_rounds) == (CommandOutcome.CLEARED, 0)
    assert ledger.status("motor_01").rounds_completed == 0


def test_stop_replies_with_what_it_cleared(service: RpcService) -> None:
    service.handle("motor_01", "rotate", {"commandId": "c-0000bbbb", "rounds": 500})
    service.handle("motor_01", "rotate", {"commandId": "c-0000cccc", "rounds": 7, "speedRpm": 30})
    stop = StopReply.model_validate(service.handle("motor_01", "stop", {}))
    assert stop.cleared_commands == ["c-0000bbbb", "c-0000cccc"]
    assert 500 < stop.cleared_rounds <= 507


@pytest.mark.parametrize(
    ("device", "method", "params", "code", "detail"),
    [
        (
            "motor_01",
            "spin",
            {},
            "UNKNOWN_METHOD",
            "unknown method 'spin'; expected one of rotate, stop, status",
        ),
        ("motor_09", "rotate", {"commandId": "c-0000dddd", "rounds": 1}, "UNKNOWN_DEVICE", "motor_09"),
        ("motor_01", "rotate", {"rounds": 1}, "BAD_PARAMS", "commandId: Field required"),
        (
            "motor_01",
            "rotate",
            {"commandId": "c-0000dddd", "rounds": 0},
            "BAD_PARAMS",
            "rounds: Input should be",
        ),
        (
            "motor_01",
            "rotate",
            {"commandId": "c-0000dddd", "rounds": "3"},
            "BAD_PARAMS",
            "rounds: Input should be",
        ),
        (
            "motor_01",
            "rotate",
            {"commandId": "x", "rounds": 1},
            "BAD_PARAMS",
            "commandId: String should match",
        ),
        ("motor_01", "rotate", [1, 2], "BAD_PARAMS", "params must be a JSON object, got list"),
    ],
)
def test_bad_requests_get_an_error_reply_with_a_reason(
    service: RpcService, device: str, method: str, params: object, code: str, detail: str
) -> None:
    reply = ErrorReply.model_validate(service.handle(device, method, params))
    assert reply.error == code
    assert detail in reply.detail


def test_buffer_down_answers_unavailable_at_once_and_recovers() -> None:
    with RedisServer(appendonly=True) as server:
        client = redis_lib.Redis.from_url(
            server.url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1
        )
        ledger = CommandLedger(client, dedupe_ttl_s=60, max_queued_rounds=100)
        clock = ScaledClock(50.0)
        motor = MotorController(
            "motor_01",
            SimulatedDriver(clock),
            ledger,
            MotionProfile(100, 1000.0, 10_000.0),
            clock,
            idle_poll_s=0.05,
        )
        motor.start()
        service = RpcService({"motor_01": motor}, ledger)
        try:
            server.stop()
            for method, params in (
                ("rotate", {"commandId": "c-0000eeee", "rounds": 1}),
                ("stop", {}),
                ("status", {}),
            ):
                started = time.monotonic()
                reply = ErrorReply.model_validate(service.handle("motor_01", method, params))
                assert reply.error == "UNAVAILABLE"
                assert "local Redis unavailable" in reply.detail
                assert time.monotonic() - started < 5
            server.start()
            accepted = RotateReply.model_validate(
                service.handle("motor_01", "rotate", {"commandId": "c-0000eeee", "rounds": 2})
            )
            assert not accepted.duplicate  # the refused attempt left no trace
            deadline = time.monotonic() + 10
            while ledger.status("motor_01").commands_done < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert motor.driver.total_steps == 200  # type: ignore[attr-defined]
        finally:
            motor.close()
            client.close()


def test_rpcs_are_answered_where_they_arrive_until_one_is_slow_and_always_in_order(
    service: RpcService, sync_redis: redis_lib.Redis
) -> None:
    answered: list[tuple[object, str, dict[str, Any]]] = []  # (request id, answering thread, reply)

    def answer(rpc: Rpc) -> None:
        reply = service.handle(str(rpc.device), rpc.method, rpc.params)
        answered.append((rpc.request_id, threading.current_thread().name, reply))

    def rotate(n: int) -> Rpc:
        return Rpc("motor_01", n, "rotate", {"commandId": f"c-{n:08x}", "rounds": 100})

    here = threading.current_thread().name
    dispatch = RpcDispatch(answer)
    try:
        dispatch.deliver(rotate(1))  # fast: answered here
        # Redis holds every script for 0.3 s (far above INLINE_RPC_SLOW_S): the next RPC waits here.
        sync_redis.client_pause(300, all=False)
        dispatch.deliver(rotate(2))
        # Later RPCs go to the RPC thread; the stop queued behind a paused rotate must not overtake it.
        sync_redis.client_pause(300, all=False)
        dispatch.deliver(rotate(3))
        dispatch.deliver(Rpc("motor_01", 4, "stop", {}))
        wait_until(lambda: len(answered) == 4)
        dispatch.deliver(rotate(5))  # the thread answered the stop fast: answered here again
    finally:
        dispatch.close()
    threads = [(request, thread) for request, thread, _ in answered]
    assert threads == [(1, here), (2, here), (3, "giftwheel-rpc"), (4, "giftwheel-rpc"), (5, here)]
    assert "c-00000003" in StopReply.model_validate(answered[3][2]).cleared_commands
