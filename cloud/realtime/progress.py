"""Motor telemetry from ThingsBoard -> command ledger + live state + a compact viewer event.

No framework imports: the webhook route parses and authenticates, this decides.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic.alias_generators import to_camel
from redis.exceptions import RedisError

from cloud.ledger.store import Command, Ledger
from cloud.realtime.events import Publish, ViewerEvent, device_rooms
from cloud.realtime.live_state import LiveState
from cloud.realtime.progress_pacer import ProgressPacer
from giftwheel.contracts.motor import RECENT_DONE_LIMIT, ROUNDS_CEILING, CommandId, MotorState, Telemetry

log = structlog.get_logger(__name__)

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


_PROGRESS_KEYS = (
    "commandId",
    "commandRounds",
    "commandRoundsDone",
    "commandDone",
    "queuedRounds",
    "roundsCompleted",
    "state",
    "ts",
)


def viewer_payload(device: str, state: dict[str, Any]) -> dict[str, Any]:
    """The compact event: what the bar needs, plus an ETA from the smoothed seconds per round."""
    payload = {"device": device, **{k: state[k] for k in _PROGRESS_KEYS if k in state}}
    seconds_per_round = state.get("secondsPerRound")
    queued = state.get("queuedRounds")
    if isinstance(seconds_per_round, int | float) and isinstance(queued, int):
        payload["etaS"] = round(queued * seconds_per_round, 1)
    return payload


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


class ProgressService:
    def __init__(self, ledger: Ledger, live: LiveState, publish: Publish, pacer: ProgressPacer) -> None:
        self._ledger = ledger
        self._live = live
        self._publish = publish
        self._pacer = pacer
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
        guarded), the merge drops what is older than the state or repeats it, and each command's
        done is announced once (``LiveState.claim_done``).

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
        merged = await self._live.merge(device, values, ts_ms, latest_ms=latest_ms)
        if finished is not None:
            # A done is published even when later telemetry overtook it: its own numbers count.
            done = viewer_payload(device, {**merged.state, **values, "ts": ts_ms})
            if not await self._announce_done(device, finished.command_id, done):
                return Applied(None, ledger_state)
            self._pacer.done(device)
            return Applied(ViewerEvent.MOTOR_DONE.value, ledger_state)
        if not merged.applied:
            return Applied(None, ledger_state)
        await self._pacer.progress(device, viewer_payload(device, merged.state), device_rooms(device))
        return Applied(ViewerEvent.MOTOR_PROGRESS.value, ledger_state)

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
        was lost upstream (ThingsBoard gave up on the webhook). Viewers get the done they missed,
        marked ``recovered`` so an overlay already showing a newer command keeps it."""
        for command in await self._ledger.close_reported(device, command_ids):
            self.recovered_dones += 1
            log.warning(
                "done report recovered from a heartbeat",
                command_id=command.command_id,
                device=device,
                was=command.state.value,
            )
            finished = {
                "commandId": command.command_id,
                "commandRounds": command.rounds,
                "commandRoundsDone": command.rounds,
                "commandDone": True,
            }
            # A late joiner must not see the bar stuck short of the end either.
            await self._live.merge(
                device, finished, ts_ms, latest_ms=latest_ms, if_showing=command.command_id
            )
            done = {"device": device, **finished, "recovered": True, "ts": ts_ms}
            await self._announce_done(device, command.command_id, done)

    async def _announce_done(self, device: str, command_id: str, done: dict[str, Any]) -> bool:
        """Remember and publish a command's done unless it was announced already; False then."""
        if not await self._live.claim_done(command_id):
            return False
        try:
            await self._live.remember_done(device, done)
            await self._publish(ViewerEvent.MOTOR_DONE.value, done, device_rooms(device))
        except BaseException:
            # Not announced: the chain's retry (the webhook answers 503) must be able to.
            with contextlib.suppress(RedisError, OSError):
                await self._live.unclaim_done(command_id)
            raise
        return True
