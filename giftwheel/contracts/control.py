"""Control requests (stop, hold, resume, cancel) and their outcomes: the wire between the API and the workers.

Path: the API (console or ``giftwheel ctl``) XADDs a ControlRequest to CONTROL_STREAM; a worker of
the consumer group CONTROL_GROUP carries it out (cloud ledger, then the edge RPCs through its own
dispatcher device), LPUSHes the ControlOutcome to ``control_result_key(request_id)`` and acks. The
API waits on that key with BLPOP. A held device is a field of the HOLDS_KEY hash (``"*"``: every
motor, known or not), whose value is a HoldRecord.

Meaning of the verbs: **hold** halts a motor where it is and keeps its work (gifts for it are still
accepted and recorded as held, never turned); **resume** lifts the hold and turns the held work,
each command exactly once; **cancel** records the held work as cancelled, with who and why (only
held work: a motor that is not held is refused); **stop** is hold and cancel at once.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from giftwheel.contracts.motor import DeviceName

CONTROL_STREAM = "giftwheel:control"
CONTROL_GROUP = "control"
# Field name of the JSON-encoded ControlRequest inside a CONTROL_STREAM entry.
CONTROL_FIELD = "request"
# Hash: device name (or ALL_MOTORS) -> HoldRecord JSON. A field present = that device is held.
HOLDS_KEY = "giftwheel:holds"
# Every console and ctl action, who did it, when, and its result.
AUDIT_STREAM = "giftwheel:audit"
# The device of a request that addresses every motor, and the holds field that holds them all.
ALL_MOTORS = "*"

RequestId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Operator = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Reason = Annotated[str, StringConstraints(max_length=200)]
Target = DeviceName | Literal["*"]


class ControlAction(StrEnum):
    STOP = "stop"  # hold + cancel: halt now, drop everything queued, stay held
    HOLD = "hold"  # halt now, keep the work; new gifts are recorded held
    RESUME = "resume"  # lift the hold, turn the held work once
    CANCEL = "cancel"  # held work -> cancelled (who, why); the hold stays


def control_result_key(request_id: str) -> str:
    """The list a worker LPUSHes a request's ControlOutcome to (expires after a while)."""
    return f"{CONTROL_STREAM}:result:{request_id}"


def new_request_id() -> str:
    return secrets.token_hex(16)


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ControlRequest(_Wire):
    request_id: RequestId
    action: ControlAction
    device: Target
    by: Operator
    reason: Reason = ""
    at_ms: int = Field(ge=0)

    @property
    def all_motors(self) -> bool:
        return self.device == ALL_MOTORS

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class HoldRecord(_Wire):
    """Who held a device (or ALL_MOTORS), why and when: the value of its HOLDS_KEY field."""

    by: Operator
    reason: Reason = ""
    at_ms: int = Field(ge=0)
    request_id: RequestId | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class MotorOutcome(_Wire):
    """What one request did to one motor: cloud ledger counts and the edge's answer."""

    device: DeviceName
    # The cloud part took effect and the edge confirmed it (or had nothing to do).
    ok: bool
    # Human-readable: what happened, or why not (the edge not reached, the e-stop still pressed).
    detail: str = ""
    # The edge's reply (HoldReply, ResumeReply, StopReply as JSON) or its ErrorReply; None: no RPC sent.
    edge: dict[str, Any] | None = None
    # Commands in the cloud ledger now held for this motor (after this request).
    held_commands: int = Field(default=0, ge=0)
    # Commands this request moved to cancelled (cloud-held ones and those the edge's stop cleared).
    cancelled_commands: int = Field(default=0, ge=0)
    # Held commands this request put back in the queue to be dispatched (resume).
    requeued_commands: int = Field(default=0, ge=0)


class ControlOutcome(_Wire):
    request_id: RequestId
    # None only in the refusal of a request a worker could not read (an action or device it does
    # not know, a field missing): it answers what it could read, the request id.
    action: ControlAction | None
    device: Target | None
    ok: bool  # every motor ok (True for a request that found no motor to act on)
    motors: list[MotorOutcome] = []
    done_at_ms: int = Field(ge=0)
    # Set when the request was refused as a whole (e.g. cancel of a device that is not held).
    refused: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)
