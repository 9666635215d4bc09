"""What viewers are shown of the motors: their state for late joiners (in Redis) and the events.

The feedback service decides what a telemetry message means for the ledger; this only shows it:
the state merged newest ts first, progress paced, each command's done announced once.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.exceptions import RedisError

from cloud.realtime.events import Publish, ViewerEvent, device_rooms
from cloud.realtime.live_state import LiveState
from cloud.realtime.progress_pacer import ProgressPacer

_PROGRESS_KEYS = (
    "commandId",
    "commandRounds",
    "commandRoundsDone",
    "commandDone",
    "queuedRounds",
    "roundsCompleted",
    "state",
    "estop",
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


class MotorEvents:
    def __init__(self, live: LiveState, publish: Publish, pacer: ProgressPacer) -> None:
        self._live = live
        self._publish = publish
        self._pacer = pacer

    async def show(
        self, device: str, values: dict[str, Any], ts_ms: int, *, latest_ms: int, done: str | None
    ) -> str | None:
        """Merge a motor's telemetry values into its state and publish; the event published, or None
        when the update was stale (or ``done``, the command it finishes, was announced already).

        Redis errors propagate, with nothing announced that a retry could not announce again.
        """
        merged = await self._live.merge(device, values, ts_ms, latest_ms=latest_ms)
        if done is not None:
            # A done is published even when later telemetry overtook it: its own numbers count.
            payload = viewer_payload(device, {**merged.state, **values, "ts": ts_ms})
            if not await self._announce_done(device, done, payload):
                return None
            self._pacer.done(device)
            return ViewerEvent.MOTOR_DONE.value
        if not merged.applied:
            return None
        await self._pacer.progress(device, viewer_payload(device, merged.state), device_rooms(device))
        return ViewerEvent.MOTOR_PROGRESS.value

    async def show_recovered_done(
        self, device: str, command_id: str, rounds: int, ts_ms: int, *, latest_ms: int
    ) -> None:
        """The done viewers missed because its report was lost, marked ``recovered`` so an overlay
        already showing a newer command keeps it."""
        finished = {
            "commandId": command_id,
            "commandRounds": rounds,
            "commandRoundsDone": rounds,
            "commandDone": True,
        }
        # A late joiner must not see the bar stuck short of the end either.
        await self._live.merge(device, finished, ts_ms, latest_ms=latest_ms, if_showing=command_id)
        done = {"device": device, **finished, "recovered": True, "ts": ts_ms}
        await self._announce_done(device, command_id, done)

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
