"""The motor telemetry the feedback webhook takes: the keys of giftwheel.contracts.motor.Telemetry."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.alias_generators import to_camel

from giftwheel.contracts.motor import (
    RECENT_DONE_LIMIT,
    ROUNDS_CEILING,
    CommandId,
    EStopInput,
    MotorState,
    Telemetry,
)

# Strict: the edge sends numbers and booleans as such, so "yes", "3", 3.0 or true for a count is a
# broken sender, not a value to coerce (lax, "yes" was a done and published as one).
_Count = Annotated[int, Field(ge=0, le=2**53, strict=True)]
_Rounds = Annotated[int, Field(ge=0, le=ROUNDS_CEILING, strict=True)]


class MotorTelemetry(BaseModel):
    """The telemetry keys a motor reports (giftwheel.contracts.motor.Telemetry), all optional.

    Other keys are ignored: a ThingsBoard user may route more telemetry through the same chain.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    rounds_completed: _Count | None = None
    command_id: CommandId | None = None
    command_rounds: _Rounds | None = None
    command_rounds_done: _Rounds | None = None
    command_done: StrictBool | None = None
    queued_rounds: _Count | None = None
    state: MotorState | None = None
    received_ts: _Count | None = None
    started_ts: _Count | None = None
    finished_ts: _Count | None = None
    recent_done: Annotated[list[CommandId], Field(max_length=RECENT_DONE_LIMIT)] | None = None
    # The Pi's emergency stop button, on each change: kept in the motor's state for the console.
    estop: EStopInput | None = None

    @model_validator(mode="after")
    def _some_motor_key(self) -> MotorTelemetry:
        if not self.model_fields_set:
            raise ValueError(f"no motor telemetry key; expected any of {', '.join(Telemetry)}")
        return self

    @property
    def finishes_command(self) -> bool:
        """The command is done when the edge says so or when its rounds are all done."""
        if self.command_id is None:
            return False
        rounds_done = (
            self.command_rounds is not None
            and self.command_rounds_done is not None
            and self.command_rounds_done >= self.command_rounds
        )
        return bool(self.command_done) or rounds_done

    def values(self) -> dict[str, Any]:
        """The motor's state keys (recentDone is about past commands, not part of its state)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"recent_done"}, mode="json")
