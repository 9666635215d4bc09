"""Carries out one control request: the cloud's part (holds, ledger) first, then the edge RPCs.

Each step is safe to repeat, so a request a dead worker left half-done is simply carried out again:
a hold placed twice keeps its first record, only held commands are requeued or cancelled, and the
edge's hold, resume and stop are idempotent. The cloud's part takes effect whether or not the edge
is reached (a Pi offline: ThingsBoard answers NO_ACTIVE_CONNECTION); the outcome says which motors
confirmed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from pydantic import ValidationError

from cloud.control.holds import Holds
from cloud.ledger import Ledger
from cloud.worker.dispatcher import Dispatcher, DispatchUnavailable, DispatchUncertain
from giftwheel.contracts.control import (
    ControlAction,
    ControlOutcome,
    ControlRequest,
    HoldRecord,
    MotorOutcome,
)
from giftwheel.contracts.motor import RpcError, RpcMethod, StopReply

log = structlog.get_logger(__name__)

# Answers that mean the edge never got the RPC (or never answered it): the cloud part stands.
_NOT_REACHED = {"TIMEOUT", "NO_ACTIVE_CONNECTION", "NO_ANSWER", "CONNECTION_LOST", "NOT_CONNECTED", "timeout"}


def _problem(reply: dict[str, Any]) -> str:
    """'' when the edge did it; otherwise what the operator is told."""
    error = str(reply.get("error", ""))
    if not error:
        return ""
    detail = f": {reply['detail']}" if reply.get("detail") else ""
    if error in _NOT_REACHED:
        return f"edge not reached ({error}{detail}); the cloud part took effect"
    if error == RpcError.ESTOP_ENGAGED:
        return "the Pi's emergency stop button is pressed: the motor stays held until it is released"
    return f"edge refused ({error}{detail})"


class ControlExecutor:
    def __init__(self, ledger: Ledger, holds: Holds, dispatcher: Dispatcher, *, rpc_wait_s: float) -> None:
        self._ledger = ledger
        self._holds = holds
        self._dispatcher = dispatcher
        self._rpc_wait_s = rpc_wait_s

    async def execute(self, request: ControlRequest) -> ControlOutcome:
        known = await self._ledger.devices()
        devices = sorted(known) if request.all_motors else [request.device]
        refused: str | None = None
        motors: list[MotorOutcome] = []
        if request.action is ControlAction.CANCEL:
            held = await self._holds.read()
            devices = [d for d in devices if held.covers(d)]
            if not devices:
                refused = "only held work can be cancelled: hold the motor first (or stop it)"
        if refused is None:
            if request.action in (ControlAction.HOLD, ControlAction.STOP):
                await self._holds.place(request.device, self._record(request))
            motors = list(await asyncio.gather(*(self._motor(request, d) for d in devices)))
            if request.action is ControlAction.RESUME:
                motors = await self._resume_cloud(request, known, motors)
        outcome = ControlOutcome(
            request_id=request.request_id,
            action=request.action,
            device=request.device,
            ok=refused is None and all(m.ok for m in motors),
            motors=motors,
            done_at_ms=self._ledger.clock.wall_ms(),
            refused=refused,
        )
        log.info(
            "control_done",
            request_id=request.request_id,
            action=request.action.value,
            device=request.device,
            by=request.by,
            ok=outcome.ok,
            refused=refused,
        )
        return outcome

    @staticmethod
    def _record(request: ControlRequest) -> HoldRecord:
        return HoldRecord(
            by=request.by, reason=request.reason, at_ms=request.at_ms, request_id=request.request_id
        )

    async def _call(self, method: RpcMethod, device: str) -> dict[str, Any]:
        try:
            return await self._dispatcher.call(method, device, timeout_s=self._rpc_wait_s)
        except DispatchUncertain as exc:
            return {"error": "CONNECTION_LOST", "detail": str(exc)}
        except DispatchUnavailable as exc:
            return {"error": "NOT_CONNECTED", "detail": str(exc)}

    async def _motor(self, request: ControlRequest, device: str) -> MotorOutcome:
        """The edge's part for one motor (and, for cancel and stop, the cloud's cancellations)."""
        action = request.action
        cancelled = 0
        if action in (ControlAction.CANCEL, ControlAction.STOP):
            # The cloud's part first, all of it: a worker that dies after the edge's stop leaves
            # nothing for a retry to learn from the edge (its queue is empty by then).
            cancelled = await self._ledger.cancel_held(device, by=request.by, reason=request.reason)
            cancelled += await self._ledger.cancel_outstanding(device, by=request.by, reason=request.reason)
        if action is ControlAction.HOLD:
            edge = await self._call(RpcMethod.HOLD, device)
        elif action is ControlAction.RESUME:
            edge = await self._call(RpcMethod.RESUME, device)
        else:
            if action is ControlAction.STOP:
                edge = await self._call(RpcMethod.HOLD, device)
                if _problem(edge):  # not held at the edge: its queue is not cleared either
                    return await self._motor_outcome(device, edge, cancelled=cancelled)
            edge = await self._call(RpcMethod.STOP, device)
            cancelled += await self._cancel_cleared(request, device, edge)
        return await self._motor_outcome(device, edge, cancelled=cancelled)

    async def _cancel_cleared(self, request: ControlRequest, device: str, edge: dict[str, Any]) -> int:
        try:
            cleared = StopReply.model_validate(edge).cleared_commands
        except ValidationError:
            return 0
        return await self._ledger.cancel_commands(device, cleared, by=request.by, reason=request.reason)

    async def _motor_outcome(
        self, device: str, edge: dict[str, Any], *, cancelled: int = 0, requeued: int = 0
    ) -> MotorOutcome:
        problem = _problem(edge)
        return MotorOutcome(
            device=device,
            ok=not problem,
            detail=problem or "done",
            edge=edge,
            held_commands=await self._ledger.held_count(device),
            cancelled_commands=cancelled,
            requeued_commands=requeued,
        )

    async def _resume_cloud(
        self, request: ControlRequest, known: set[str], motors: Sequence[MotorOutcome]
    ) -> list[MotorOutcome]:
        """Lift the cloud's hold (but where the e-stop refused the resume) and requeue held work."""
        still = [
            m.device for m in motors if m.edge is not None and m.edge.get("error") == RpcError.ESTOP_ENGAGED
        ]
        await self._holds.lift(request.device, known=known, keep=still)
        held = await self._holds.read()
        resumed: list[MotorOutcome] = []
        for motor in motors:
            if held.covers(motor.device):
                resumed.append(motor)
                continue
            requeued = await self._ledger.requeue_held(motor.device)
            resumed.append(await self._motor_outcome(motor.device, motor.edge or {}, requeued=requeued))
        return resumed
