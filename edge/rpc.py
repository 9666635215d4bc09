"""RPC methods as a table over the plain modules: rotate, stop, hold, resume, status. Replies are wire
dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from edge.buffer.ledger import CommandLedger, SubmitStatus
from edge.errors import BufferUnavailable, EStopEngaged
from edge.motor.controller import MotorController
from giftwheel.contracts.motor import (
    CommandOutcome,
    ErrorReply,
    HoldReply,
    ResumeReply,
    RotateParams,
    RotateReply,
    RpcError,
    RpcMethod,
    StopReply,
)

log = structlog.get_logger(__name__)

Handler = Callable[[MotorController, dict[str, Any]], BaseModel]


def _error(code: RpcError, detail: str) -> dict[str, Any]:
    return ErrorReply(error=code.value, detail=detail).model_dump(by_alias=True)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())


class RpcService:
    def __init__(self, motors: Mapping[str, MotorController], ledger: CommandLedger) -> None:
        self._motors = motors
        self._ledger = ledger
        self._methods: dict[RpcMethod, Handler] = {
            RpcMethod.ROTATE: self._rotate,
            RpcMethod.STOP: self._stop,
            RpcMethod.STATUS: self._status,
            RpcMethod.HOLD: self._hold,
            RpcMethod.RESUME: self._resume,
        }

    def handle(self, device: str, method: object, params: object) -> dict[str, Any]:
        try:
            handler = self._methods[RpcMethod(str(method))]
        except ValueError:
            known = ", ".join(m.value for m in RpcMethod)
            return _error(RpcError.UNKNOWN_METHOD, f"unknown method {method!r}; expected one of {known}")
        motor = self._motors.get(device)
        if motor is None:
            return _error(RpcError.UNKNOWN_DEVICE, f"no motor named {device!r} on this gateway")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _error(RpcError.BAD_PARAMS, f"params must be a JSON object, got {type(params).__name__}")
        try:
            return handler(motor, params).model_dump(by_alias=True, mode="json")
        except ValidationError as exc:
            return _error(RpcError.BAD_PARAMS, _describe(exc))
        except BufferUnavailable as exc:
            return _error(RpcError.UNAVAILABLE, str(exc))
        except EStopEngaged as exc:
            return _error(RpcError.ESTOP_ENGAGED, str(exc))

    def _rotate(self, motor: MotorController, params: dict[str, Any]) -> BaseModel:
        command = RotateParams.model_validate(params)
        if command.reask:
            return self._reask(motor, command)
        if motor.faulted:
            return ErrorReply(
                error=RpcError.MOTOR_FAULT.value, detail=f"{motor.name} is in fault; restart needed"
            )
        result = motor.submit(command.command_id, command.rounds, command.speed_rpm)
        if result.status is SubmitStatus.QUEUE_FULL:
            return ErrorReply(
                error=RpcError.UNAVAILABLE.value,
                detail=f"queue full: {result.queued_rounds} queued, {command.rounds} more exceed the limit",
            )
        return RotateReply(
            command_id=command.command_id,
            queued_rounds=result.queued_rounds,
            duplicate=result.status is SubmitStatus.DUPLICATE,
            held=motor.hold_reason is not None,
        )

    def _reask(self, motor: MotorController, command: RotateParams) -> BaseModel:
        """The cloud has not seen this command's done: say where it stands, queue nothing (an edge
        that lost its Redis must not turn it twice), and send a finished one's done again."""
        recalled = self._ledger.recall(motor.name, command.command_id)
        log.info(
            "command re-asked",
            motor=motor.name,
            command_id=command.command_id,
            outcome=recalled.outcome.value if recalled.outcome else "unknown",
            done_sent_again=recalled.outcome is CommandOutcome.DONE,
        )
        if recalled.outcome is None:
            return ErrorReply(
                error=RpcError.UNKNOWN_COMMAND.value,
                detail=f"{motor.name} has no record of {command.command_id}",
            )
        return RotateReply(
            command_id=command.command_id,
            queued_rounds=recalled.queued_rounds,
            duplicate=True,
            held=motor.hold_reason is not None,
            outcome=recalled.outcome,
        )

    def _stop(self, motor: MotorController, params: dict[str, Any]) -> BaseModel:
        cleared = motor.stop_all()
        return StopReply(cleared_commands=cleared.command_ids, cleared_rounds=cleared.rounds)

    def _hold(self, motor: MotorController, params: dict[str, Any]) -> BaseModel:
        state, queued = motor.hold()
        return HoldReply(state=state, queued_rounds=queued)

    def _resume(self, motor: MotorController, params: dict[str, Any]) -> BaseModel:
        resumed, queued = motor.resume()
        return ResumeReply(resumed=resumed, queued_rounds=queued)

    def _status(self, motor: MotorController, params: dict[str, Any]) -> BaseModel:
        return self._ledger.status(motor.name)
