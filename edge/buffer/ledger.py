"""Per-motor command ledger in the local Redis: queue, dedupe, rounds-done progress, counters.

Every method is one Lua script, so a state change and the telemetry describing it are written
together or not at all; a crash loses nothing and repeats only what turned since the last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from edge.buffer import scripts
from edge.buffer.connection import ThreadConnections
from edge.buffer.keys import Keys
from edge.errors import BufferUnavailable
from giftwheel.contracts.motor import CommandOutcome, EStopInput, MotorState, StatusReply

T = TypeVar("T")


class SubmitStatus(IntEnum):
    ACCEPTED = 0
    DUPLICATE = 1
    QUEUE_FULL = 2


@dataclass(frozen=True)
class SubmitResult:
    status: SubmitStatus
    queued_rounds: int
    begun: ActiveCommand | None = None  # the command, begun by the submit (``begin=True``)


class HoldReason(StrEnum):
    """Why a motor is held; the stronger one wins (an e-stop over an operator's hold)."""

    OPERATOR = "operator"
    ESTOP = "estop"

    @property
    def state(self) -> MotorState:
        return MotorState.STOPPED_BY_ESTOP if self is HoldReason.ESTOP else MotorState.HELD


@dataclass(frozen=True)
class ActiveCommand:
    command_id: str
    rounds: int
    speed_rpm: float | None
    rounds_done: int
    pulses_done: int  # the last checkpoint, in driver pulses since the command started


@dataclass(frozen=True)
class Recalled:
    """A re-asked command's outcome (None: this Redis has no record of it) and the motor's queue."""

    outcome: CommandOutcome | None
    queued_rounds: int


@dataclass(frozen=True)
class Cleared:
    command_ids: list[str]
    rounds: int


# Finished commandIds each motor keeps for its heartbeats (EdgeSettings.recent_done_in_heartbeat).
DEFAULT_RECENT_DONE = 20


def now_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Redis connection trouble becomes BufferUnavailable: retryable, never a crash."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BufferUnavailable(f"local Redis unavailable: {exc}") from exc


class CommandLedger:
    def __init__(
        self,
        client: redis.Redis,
        *,
        keys: Keys | None = None,
        dedupe_ttl_s: int,
        max_queued_rounds: int,
        progress_interval_s: float = 0.0,
        recent_done: int = DEFAULT_RECENT_DONE,
        clock_ms: Callable[[], int] = now_ms,
        on_outbox_write: Callable[[], None] | None = None,
        connections: ThreadConnections | None = None,
    ) -> None:
        """``on_outbox_write`` is called after each script that may have appended telemetry. The
        scripts run on ``connections`` (by default its own, made from ``client``)."""
        self._redis = client
        self._connections = connections or ThreadConnections(client)
        self.keys = keys or Keys()
        self._dedupe_ttl_s = dedupe_ttl_s
        self._max_queued_rounds = max_queued_rounds
        self._progress_interval_ms = round(progress_interval_s * 1000)  # 0: report every round
        self._recent_done = recent_done
        self._clock_ms = clock_ms
        self._on_outbox_write = on_outbox_write or (lambda: None)
        self._submit = client.register_script(scripts.SUBMIT)
        self._begin = client.register_script(scripts.BEGIN)
        self._progress = client.register_script(scripts.PROGRESS)
        self._finish = client.register_script(scripts.FINISH)
        self._clear = client.register_script(scripts.CLEAR)
        self._snapshot = client.register_script(scripts.SNAPSHOT)
        self._hold = client.register_script(scripts.HOLD)
        self._recall = client.register_script(scripts.RECALL)

    def _run(self, script: Script, keys: list[str], args: list[Any], *, emits: bool = True) -> Any:
        with translated_errors():
            result = self._connections.run_script(script, keys, args)
        if emits:
            self._on_outbox_write()
        return result

    def submit(
        self, motor: str, command_id: str, rounds: int, speed_rpm: float | None, *, begin: bool = False
    ) -> SubmitResult:
        """Queue a command unless its commandId was seen; durable in Redis when this returns.

        With ``begin`` (the motor is idle), a command that is the whole queue with none current is
        also begun (:meth:`begin`) in the same script and returned as ``begun``: an idle motor takes a
        gift in one round trip, and its start is one telemetry entry instead of queued + started."""
        k = self.keys
        status, queued, begun = self._run(
            self._submit,
            [k.commands(motor), k.motor(motor), k.seen(motor, command_id), k.outbox],
            [
                motor,
                command_id,
                rounds,
                "" if speed_rpm is None else repr(speed_rpm),
                self._clock_ms(),
                self._dedupe_ttl_s,
                self._max_queued_rounds,
                1 if begin else 0,
            ],
        )
        return SubmitResult(SubmitStatus(int(status)), int(queued), _active(begun) if begun else None)

    def begin(self, motor: str) -> ActiveCommand | None:
        """The oldest unfinished command (resumed with its persisted progress), or None."""
        k = self.keys
        row = self._run(
            self._begin, [k.commands(motor), k.motor(motor), k.outbox], [motor, self._clock_ms()], emits=False
        )
        if row is None:  # an idle motor asks twice a second: nothing was written
            return None
        self._on_outbox_write()
        return _active(row)

    def progress(self, motor: str, command_id: str, pulses: int, pulses_per_round: int) -> bool | None:
        """Checkpoint: ``pulses`` of the command have turned. True when that finished the command;
        None if it was cleared. An older checkpoint than the stored one changes nothing.

        Every checkpoint is persisted; round telemetry only once per progress interval (the done
        always)."""
        row = self._run(self._progress, *self._checkpoint(motor, command_id, pulses, pulses_per_round))
        return None if row is None else bool(int(row[1]))

    def finish(
        self, motor: str, command_id: str, pulses: int, pulses_per_round: int, *, begin_next: bool
    ) -> ActiveCommand | None:
        """The checkpoint at a command's last pulse (it finishes the command unless it was cleared or
        already finished) and, with ``begin_next``, :meth:`begin` in the same script: a motor busy
        with a queue pays one round trip per command, not two. Returns the begun command or None."""
        keys, args = self._checkpoint(motor, command_id, pulses, pulses_per_round)
        _, row = self._run(self._finish, keys, [*args, 1 if begin_next else 0])
        return None if row is None else _active(row)

    def recall(self, motor: str, command_id: str) -> Recalled:
        """Where a command this motor accepted stands (a re-ask): never queues it. A finished one's
        done telemetry goes into the outbox again, with its original ts and values."""
        k = self.keys
        outcome, queued = self._run(
            self._recall, [k.seen(motor, command_id), k.motor(motor), k.outbox], [motor], emits=False
        )
        known = None if outcome == "unknown" else CommandOutcome(outcome)
        if known is CommandOutcome.DONE:
            self._on_outbox_write()
        return Recalled(known, int(queued))

    def _checkpoint(
        self, motor: str, command_id: str, pulses: int, pulses_per_round: int
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        return (
            [k.commands(motor), k.motor(motor), k.outbox, k.recent_done(motor), k.seen(motor, command_id)],
            [
                motor,
                command_id,
                pulses,
                pulses_per_round,
                self._clock_ms(),
                self._progress_interval_ms,
                self._recent_done,
            ],
        )

    def clear(self, motor: str) -> Cleared:
        """Drop every queued command (the current one too); their commandIds stay deduped, their
        markers saying 'cleared'."""
        k = self.keys
        row = self._run(
            self._clear,
            [k.commands(motor), k.motor(motor), k.outbox],
            [motor, self._clock_ms(), k.seen(motor, "")],
        )
        return Cleared(command_ids=[str(c) for c in row[1:]], rounds=int(row[0]))

    def report(self, motor: str, state: MotorState | None = None) -> None:
        """Queue a state snapshot for ThingsBoard (heartbeat), optionally setting the state first.

        It repeats the motor's last finished commandIds (recentDone), so the backend can close a
        command whose done report was lost upstream (a webhook ThingsBoard gave up on)."""
        k = self.keys
        self._run(
            self._snapshot,
            [k.motor(motor), k.outbox, k.recent_done(motor)],
            [motor, self._clock_ms(), "" if state is None else state.value],
        )

    def hold(self, motor: str, reason: HoldReason | None, estop: EStopInput | None = None) -> int:
        """Hold the motor (its state says why) or, with None, lift the hold (state idle): durable
        when this returns, reported with the e-stop button's reading if given. Returns the queued
        rounds; the queue itself is untouched."""
        k = self.keys
        state = MotorState.IDLE if reason is None else reason.state
        queued = self._run(
            self._hold,
            [k.motor(motor), k.outbox],
            [
                motor,
                self._clock_ms(),
                "" if reason is None else reason.value,
                state.value,
                "" if estop is None else estop.value,
            ],
        )
        return int(queued)

    def hold_reason(self, motor: str) -> HoldReason | None:
        """The stored hold: it outlives a restart of the daemon."""
        with translated_errors():
            reason: str | None = self._redis.hget(self.keys.motor(motor), "hold")  # type: ignore[assignment]
        return None if reason is None else HoldReason(reason)

    def outbox_length(self) -> int:
        with translated_errors():
            return int(self._redis.xlen(self.keys.outbox))

    def status(self, motor: str) -> StatusReply:
        with translated_errors():
            fields: dict[str, str] = self._redis.hgetall(self.keys.motor(motor))  # type: ignore[assignment]
        return StatusReply(
            state=MotorState(fields.get("state", MotorState.IDLE.value)),
            queued_rounds=int(fields.get("q", 0)),
            rounds_completed=int(fields.get("rc", 0)),
            commands_done=int(fields.get("cd", 0)),
            current_command_id=fields.get("cur"),
        )


def _active(row: list[Any]) -> ActiveCommand:
    command_id, rounds, speed, done, pulses = row
    speed_rpm = float(speed) if speed else None
    return ActiveCommand(str(command_id), int(rounds), speed_rpm, int(done), int(pulses))


def retry_until_available(
    action: Callable[[], T],
    *,
    should_stop: Callable[[], bool],
    waiting: Callable[[], None] = lambda: None,
    backoff_s: float = 0.2,
    max_backoff_s: float = 2.0,
) -> T | None:
    """Run ``action`` until the buffer answers (None if asked to stop first): progress is never skipped.
    ``waiting`` is called before each pause (a motor's heartbeat: waiting is not hanging)."""
    delay = backoff_s
    while True:
        try:
            return action()
        except BufferUnavailable:
            if should_stop():
                return None
            waiting()
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
