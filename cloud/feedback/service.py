"""Motor telemetry from ThingsBoard -> the command ledger, then shown to viewers through realtime.

No framework imports: the webhook route parses and authenticates, this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import structlog

from cloud.feedback.telemetry import MotorTelemetry
from cloud.ledger.store import Command, Ledger
from cloud.realtime.motor_events import MotorEvents

log = structlog.get_logger(__name__)


class FeedbackRefused(Exception):
    """Telemetry about what the ledger does not know: shown to nobody, counted by ``reason``."""

    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.reason = reason
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Applied:
    event: str | None  # the viewer event published, None when the update was stale
    ledger_state: str | None  # the command's ledger state after a done (None: not a done/unknown)


class FeedbackService:
    def __init__(self, ledger: Ledger, motors: MotorEvents) -> None:
        self._ledger = ledger
        self._motors = motors
        self.recovered_dones = 0
        self.clock_ahead = 0
        self.refused: dict[str, int] = {}
        # Motors the ledger has sent a command (it never forgets one): asked once per process.
        self._known_devices: set[str] = set()

    async def apply(
        self, device: str, telemetry: MotorTelemetry, ts_ms: int, *, now_ms: int, max_ahead_ms: int
    ) -> Applied:
        """Record and publish one telemetry message. Redis errors propagate (the chain retries).

        A ts more than ``max_ahead_ms`` past ``now_ms`` (this server's clock) is counted and taken
        as ``now_ms``: kept, it would outrank every later update of the device until it came true.

        Idempotent: ThingsBoard's rule-engine queue may deliver the same message twice, at once or
        after later ones. The ledger is updated before anything is published, so a viewer never
        sees a done the ledger does not hold; the ledger counts a done once (its transition is
        guarded), and realtime drops what is older than the state or repeats it, and announces
        each command's done once.

        Only a motor the ledger has sent a command is shown, and only a command the ledger issued
        to that motor is shown done: anything else raises ``FeedbackRefused`` before any change.
        """
        await self._check_device(device)
        finished = await self._finished_command(device, telemetry)
        latest_ms = now_ms + max_ahead_ms
        if ts_ms > latest_ms:
            self._note_clock_ahead(device, ts_ms - now_ms)
            ts_ms = now_ms
        if telemetry.recent_done:
            await self._close_reported(device, telemetry.recent_done, ts_ms, latest_ms)
        values = telemetry.values()
        if not values:
            return Applied(None, None)
        ledger_state = None
        if finished is not None:
            moved = await self._ledger.mark_done(finished.command_id, stream=finished.stream)
            ledger_state = None if moved is None else moved.value
        done = None if finished is None else finished.command_id
        event = await self._motors.show(device, values, ts_ms, latest_ms=latest_ms, done=done)
        return Applied(event, ledger_state)

    async def _check_device(self, device: str) -> None:
        if device in self._known_devices:
            return
        if not await self._ledger.knows_device(device):
            self._refuse(
                "unknown_device",
                "x-device-name",
                "not a device of the rules, and no command was ever sent to it",
                device,
            )
        self._known_devices.add(device)

    async def _finished_command(self, device: str, telemetry: MotorTelemetry) -> Command | None:
        """The ledger's command this telemetry reports done, if it reports one."""
        if not telemetry.finishes_command or telemetry.command_id is None:
            return None
        command = await self._ledger.find(telemetry.command_id)
        if command is None or command.device != device:
            self._refuse(
                "unknown_command", "commandId", "not a command the ledger issued to this device", device
            )
        return command

    def _refuse(self, reason: str, field: str, detail: str, device: str) -> NoReturn:
        seen = self.refused[reason] = self.refused.get(reason, 0) + 1
        if seen & (seen - 1) == 0:  # the 1st, 2nd, 4th...: the count is on /metrics
            log.warning("telemetry refused", reason=reason, device=device, seen=seen)
        raise FeedbackRefused(reason, field, detail)

    def _note_clock_ahead(self, device: str, ahead_ms: int) -> None:
        self.clock_ahead += 1
        # A Pi whose clock runs fast sends every message so: the count is on /metrics, and lines
        # are written for the 1st, 2nd, 4th, 8th... only.
        if self.clock_ahead & (self.clock_ahead - 1) == 0:
            log.warning(
                "telemetry ts ahead of this server's clock; the server's time used",
                device=device,
                ahead_ms=ahead_ms,
                seen=self.clock_ahead,
            )

    async def _close_reported(self, device: str, command_ids: list[str], ts_ms: int, latest_ms: int) -> None:
        """Close what a heartbeat says finished but the ledger still holds open: its done report
        was lost upstream (ThingsBoard gave up on the webhook). Viewers get the done they missed."""
        for command in await self._ledger.close_reported(device, command_ids):
            self.recovered_dones += 1
            log.warning(
                "done report recovered from a heartbeat",
                command_id=command.command_id,
                device=device,
                was=command.state.value,
            )
            await self._motors.show_recovered_done(
                device, command.command_id, command.rounds, ts_ms, latest_ms=latest_ms
            )
