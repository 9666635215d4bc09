"""The control wire: requests and outcomes round-trip in camelCase, bad ones are refused by field,
and the API's client hands a worker's outcome back (or says it is not confirmed) over a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from cloud.control.client import ControlClient, ControlNotConfirmed
from giftwheel.contracts.control import (
    ALL_MOTORS,
    CONTROL_FIELD,
    CONTROL_STREAM,
    ControlAction,
    ControlOutcome,
    ControlRequest,
    MotorOutcome,
    control_result_key,
    new_request_id,
)


def _request(**overrides: object) -> ControlRequest:
    fields: dict[str, object] = {
        "requestId": new_request_id(),
        "action": "hold",
        "device": "wheel-1",
        "by": "ops",
        "reason": "maintenance",
        "atMs": 1_800_000_000_000,
    }
    fields.update(overrides)
    return ControlRequest.model_validate(fields)


def test_request_round_trips_in_camel_case() -> None:
    request = _request(device=ALL_MOTORS, action="stop")
    wire = request.to_json()
    assert '"requestId"' in wire
    assert '"atMs"' in wire
    assert ControlRequest.model_validate_json(wire) == request
    assert request.all_motors
    assert request.action is ControlAction.STOP


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("requestId", "not-hex"),
        ("action", "explode"),
        ("device", "wheel 1"),
        ("by", ""),
        ("by", "x" * 65),
        ("reason", "x" * 201),
        ("atMs", -1),
    ],
)
def test_bad_request_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        _request(**{field: value})
    assert field in str(refused.value)


def test_unknown_field_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        _request(extra=1)


def test_outcome_round_trips() -> None:
    outcome = ControlOutcome(
        request_id=new_request_id(),
        action=ControlAction.CANCEL,
        device="wheel-1",
        ok=False,
        motors=[
            MotorOutcome(
                device="wheel-1",
                ok=False,
                detail="edge not reached: TIMEOUT",
                edge={"error": "TIMEOUT"},
                held_commands=0,
                cancelled_commands=3,
            )
        ],
        done_at_ms=1,
    )
    assert ControlOutcome.model_validate_json(outcome.to_json()) == outcome
    assert '"cancelledCommands":3' in outcome.to_json()


async def test_client_returns_the_outcome_a_worker_pushes(redis: Redis) -> None:
    client = ControlClient(redis, wait_slice_s=0.2)
    request = _request()

    async def worker() -> None:
        read: Any = await redis.xread({CONTROL_STREAM: "0"}, count=1, block=5_000)
        fields = read[0][1][0][1]
        queued = ControlRequest.model_validate_json(fields[CONTROL_FIELD])
        outcome = ControlOutcome(
            request_id=queued.request_id, action=queued.action, device=queued.device, ok=True, done_at_ms=2
        )
        await redis.lpush(control_result_key(queued.request_id), outcome.to_json())

    task = asyncio.create_task(worker())
    outcome = await client.submit(request, timeout_s=5)
    await task
    assert outcome.request_id == request.request_id
    assert outcome.ok


async def test_client_says_not_confirmed_and_leaves_the_request_queued(redis: Redis) -> None:
    client = ControlClient(redis, wait_slice_s=0.1)
    request = _request()
    with pytest.raises(ControlNotConfirmed, match="stays queued"):
        await client.submit(request, timeout_s=0.3)
    assert await redis.xlen(CONTROL_STREAM) == 1
