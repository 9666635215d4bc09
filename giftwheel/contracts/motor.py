"""Motor commands, RPC methods, replies and telemetry keys: the wire between worker, ThingsBoard and edge.

Path: the worker, as the ThingsBoard ``dispatcher`` device, sends a client-side RPC
``{"method": "rotate", "params": DispatchParams}``; the rule chain turns it into a server-side RPC
``{"method": "rotate", "params": RotateParams}`` to the motor device, which the Pi's gateway gets
on ``v1/gateway/rpc``. The edge answers with a RotateReply or an ErrorReply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic.alias_generators import to_camel

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
CommandId = Annotated[str, StringConstraints(pattern=r"^c-[0-9a-f]{8,64}$")]

# A single command never asks for more than this; rules and the edge cap below it.
ROUNDS_CEILING = 1_000_000

# A heartbeat repeats at most this many of the motor's last finished commandIds (recentDone).
RECENT_DONE_LIMIT = 100

# The ThingsBoard device profile of motors: the type the Pi's gateway announces for each motor, the
# profile `giftwheel tb provision` creates, and the branch of the shipped rule chain that feeds the cloud.
MOTOR_PROFILE = "motor"


class RpcMethod(StrEnum):
    ROTATE = "rotate"
    STOP = "stop"
    STATUS = "status"
    # Keep the queue and stop turning: gifts for a held motor are queued on the edge, not turned.
    HOLD = "hold"
    # Lift a hold or an emergency stop (once its button is released): the queue turns again, a
    # command stopped mid-way from the pulses it had done.
    RESUME = "resume"


class MotorState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPED = "stopped"
    FAULT = "fault"
    HELD = "held"  # by the hold RPC, until resumed
    STOPPED_BY_ESTOP = "stopped_by_estop"  # by the Pi's emergency stop button, until resumed


class EStopInput(StrEnum):
    """What the Pi's emergency stop button reads (telemetry ``estop``)."""

    ENGAGED = "engaged"
    RELEASED = "released"


class RpcError(StrEnum):
    """Error codes in an ErrorReply; ThingsBoard's own (TIMEOUT, NO_ACTIVE_CONNECTION) pass through."""

    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    BAD_PARAMS = "BAD_PARAMS"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    MOTOR_FAULT = "MOTOR_FAULT"
    UNAVAILABLE = "UNAVAILABLE"
    ESTOP_ENGAGED = "ESTOP_ENGAGED"  # resume refused: the emergency stop button is still pressed
    # A re-ask (RotateParams.reask) for a commandId the edge has no record of: its buffer lost it.
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"


class CommandOutcome(StrEnum):
    """Where a command the edge accepted stands, as its answer to a re-ask says (RotateReply.outcome)."""

    PENDING = "pending"  # queued or turning
    DONE = "done"  # finished: its done telemetry was put in the outbox again
    CLEARED = "cleared"  # dropped from the queue by a stop; never finished


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class RotateParams(_Wire):
    """What a motor receives. ``device`` is present when the command came through the shipped
    rule chain: it forwards the dispatcher's params unchanged (configuration nodes cannot drop a
    key), so the motor sees the routing key too, and can check that it names itself."""

    command_id: CommandId
    rounds: Annotated[int, Field(ge=1, le=ROUNDS_CEILING, strict=True)]
    speed_rpm: Annotated[float, Field(gt=0, le=6000)] | None = None
    device: DeviceName | None = None
    # A re-ask of a command the edge accepted whose done the cloud has not seen: never queue it (an
    # edge that lost its buffer must not turn it twice), answer its outcome and, if it finished,
    # send its done telemetry again. Absent on a plain send (an older edge refuses the key).
    reask: Literal[True] | None = None


class DispatchParams(RotateParams):
    """What the dispatcher sends: the rotate params plus the target device the chain routes to."""

    device: DeviceName


class RotateReply(_Wire):
    accepted: Literal[True] = True
    command_id: CommandId
    queued_rounds: int = Field(ge=0)
    duplicate: bool = False
    held: bool = False  # queued on a held or e-stopped motor: turns after a resume
    # Only in the answer to a re-ask, and only then on the wire: an older worker's strict model
    # refuses the key, and it never re-asks.
    outcome: CommandOutcome | None = None

    @model_serializer(mode="wrap")
    def _outcome_only_when_reasked(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if self.outcome is None:
            data.pop("outcome", None)
        return data


class HoldReply(_Wire):
    state: MotorState
    queued_rounds: int = Field(ge=0)


class ResumeReply(_Wire):
    resumed: bool  # False: it was not held
    queued_rounds: int = Field(ge=0)


class StopReply(_Wire):
    stopped: Literal[True] = True
    cleared_commands: list[str]
    cleared_rounds: int = Field(ge=0)


class StatusReply(_Wire):
    state: MotorState
    queued_rounds: int = Field(ge=0)
    rounds_completed: int = Field(ge=0)
    commands_done: int = Field(ge=0)
    current_command_id: str | None = None


class ErrorReply(_Wire):
    error: str
    detail: str = ""


class Telemetry(StrEnum):
    """Telemetry keys a motor device reports."""

    ROUNDS_COMPLETED = "roundsCompleted"
    COMMAND_ID = "commandId"
    COMMAND_ROUNDS = "commandRounds"
    COMMAND_ROUNDS_DONE = "commandRoundsDone"
    COMMAND_DONE = "commandDone"
    QUEUED_ROUNDS = "queuedRounds"
    STATE = "state"
    RECEIVED_TS = "receivedTs"
    STARTED_TS = "startedTs"
    FINISHED_TS = "finishedTs"
    # Heartbeats only: the motor's last finished commandIds, newest first, so a done report lost
    # between ThingsBoard and the backend is repaired by the next heartbeat that gets through.
    RECENT_DONE = "recentDone"
    # On each change of the Pi's emergency stop button (EStopInput), with the motor's state.
    ESTOP = "estop"


def command_id_for(event_ids: Iterable[str]) -> str:
    """The commandId of a command carrying these events: same events, same id, in any order."""
    digest = hashlib.sha256("\n".join(sorted(event_ids)).encode()).hexdigest()
    return f"c-{digest[:32]}"
