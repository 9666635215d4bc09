"""One controller per motor: the only owner of its driver, running the motor's queue in order."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from edge.buffer.ledger import (
    ActiveCommand,
    Cleared,
    CommandLedger,
    HoldReason,
    SubmitResult,
    SubmitStatus,
    retry_until_available,
)
from edge.errors import BufferUnavailable, EStopEngaged
from edge.motor.checkpoint import Checkpointer, CheckpointPolicy
from edge.motor.clock import Clock
from edge.motor.driver import StepperDriver
from edge.motor.pulse_train import TRAIN_AHEAD_S, TRAIN_COUNT_MARGIN_S, TRAIN_SEGMENT_S, PulseTrain
from edge.motor.ramp import TrapezoidRamp
from giftwheel.contracts.motor import EStopInput, MotorState

log = structlog.get_logger(__name__)


# A pulse later than this many full steps' time (a descheduled thread, a slow write) makes the ramp
# re-plan from the motor's real speed. Less is a phase error the rotor rides through (a two-phase
# stepper keeps step while the field is within a full step of the rotor), and the next interval
# still counts from the real pulse: nothing is ever made up.
DEFAULT_LATE_REPLAN_FULL_STEPS = 0.5


@dataclass(frozen=True)
class MotionProfile:
    steps_per_round: int  # driver pulses per output round (full steps x microstepping)
    max_rate_sps: float
    accel_sps2: float
    microstepping: int = 1  # pulses per full step
    late_replan_full_steps: float = DEFAULT_LATE_REPLAN_FULL_STEPS

    @property
    def late_replan_intervals(self) -> float:
        """How many of its own intervals a pulse may be late before the ramp re-plans."""
        return self.microstepping * self.late_replan_full_steps

    def rate_for(self, speed_rpm: float | None) -> float:
        """The step rate for a requested speed, never above the configured maximum."""
        if speed_rpm is None:
            return self.max_rate_sps
        return min(self.max_rate_sps, speed_rpm * self.steps_per_round / 60.0)


class MotorController:
    """Runs commands from the ledger; progress is checkpointed every fraction of a round, off the
    step path (edge.motor.checkpoint).

    A held motor (the hold RPC, the emergency stop) decelerates to rest and takes no command until
    resumed; its queue stays in the ledger and keeps taking commands. The hold is stored in the
    ledger, so a restarted daemon starts held.
    """

    def __init__(
        self,
        name: str,
        driver: StepperDriver,
        ledger: CommandLedger,
        profile: MotionProfile,
        clock: Clock,
        *,
        checkpoints: CheckpointPolicy | None = None,
        idle_poll_s: float = 0.5,
    ) -> None:
        self.name = name
        self.driver = driver
        self.profile = profile
        self._ledger = ledger
        policy = checkpoints or CheckpointPolicy()
        self._checkpoint_every = policy.every_pulses(profile.steps_per_round)
        self._max_unwritten = policy.max_unwritten_pulses(profile.steps_per_round)
        self._checkpoints = Checkpointer(name, ledger, profile.steps_per_round)
        self._clock = clock
        self._idle_poll_s = idle_poll_s
        self._wake = threading.Event()
        self._parking = threading.Event()
        self._lock = threading.Lock()  # orders "clear the queue" against "take the next command"
        self._generation = 0
        self._thread = threading.Thread(target=self._run, name=f"motor-{name}", daemon=True)
        self.last_beat = time.monotonic()
        self.faulted = False
        # Each flag is only ever set outside the lock (an e-stop must not wait for Redis) and only
        # cleared under it, by resume(): a hold is never lost to a race.
        self._estop_hold = False
        self._operator_hold = False
        self._estop_engaged = False  # the button reads open now: resume is refused
        self._stored_hold_read = False
        self._reported_hold: HoldReason | None = None  # the hold last written while at rest
        # Under the lock: the motor found its queue empty and waits, so a submit may begin its command
        # and hand it over (``_handed``); the motor's loop also skips asking Redis again at once.
        self._idle = False
        self._handed: tuple[ActiveCommand, int] | None = None  # (command, generation) begun by a submit

    def start(self) -> None:
        self._checkpoints.start()
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, command_id: str, rounds: int, speed_rpm: float | None) -> SubmitResult:
        """Queue a command (durable when this returns) and wake the motor. An idle motor's command is
        begun by the same script and handed to the motor thread: one Redis round trip from gift to
        turning, and one telemetry entry for its queueing and start."""
        with self._lock:
            begin = self._idle and self.hold_reason is None and not self._parking.is_set()
            result = self._ledger.submit(self.name, command_id, rounds, speed_rpm, begin=begin)
            if result.begun is not None:
                self._handed = (result.begun, self._generation)
            if result.status is SubmitStatus.ACCEPTED:
                self._idle = False
        self._wake.set()
        return result

    @property
    def hold_reason(self) -> HoldReason | None:
        if self._estop_hold:
            return HoldReason.ESTOP
        return HoldReason.OPERATOR if self._operator_hold else None

    def hold(self) -> tuple[MotorState, int]:
        """The hold RPC: decelerate to rest, keep the queue; durable when this returns. Returns the
        state it leaves (held, or stopped_by_estop, the stronger) and the queued rounds."""
        self._operator_hold = True
        self._wake.set()
        return self._write_hold(None)

    def set_estop(self, engaged: bool) -> None:
        """The emergency stop button opened (engaged) or closed again; no Redis on this path, so a
        missing buffer cannot delay the stop. Releasing the button lifts nothing: resume() does."""
        if engaged:
            self._estop_engaged = True
            self._estop_hold = True
            self._wake.set()
        else:
            self._estop_engaged = False

    def report_estop(self, reading: EStopInput) -> None:
        """Store the e-stop hold (when it still holds) and report the button's reading with it."""
        self._write_hold(reading)

    def _write_hold(self, reading: EStopInput | None) -> tuple[MotorState, int]:
        with self._lock:
            reason = self.hold_reason
            if reason is None:  # resumed meanwhile
                status = self._ledger.status(self.name)
                return status.state, status.queued_rounds
            return reason.state, self._ledger.hold(self.name, reason, reading)

    def resume(self) -> tuple[bool, int]:
        """Lift the hold: (whether there was one, the queued rounds). Refused with EStopEngaged while
        the e-stop button is pressed."""
        with self._lock:
            if self._estop_engaged:
                raise EStopEngaged(f"{self.name}: the emergency stop button is pressed; release it first")
            if self.hold_reason is None:
                return False, self._ledger.status(self.name).queued_rounds
            queued = self._ledger.hold(self.name, None)
            self._operator_hold = False
            self._estop_hold = self._estop_engaged  # pressed again during the write: still held
            self._reported_hold = None
        self._wake.set()
        return True, queued

    def stop_all(self) -> Cleared:
        """Clear the queue and decelerate the move in progress to a halt (a hold stays)."""
        with self._lock:
            cleared = self._ledger.clear(self.name)
            self._generation += 1
            reason = self.hold_reason
            if reason is not None:  # the clear reported the state 'stopped': the hold says why
                self._ledger.hold(self.name, reason)
        self._wake.set()
        return cleared

    def close(self, timeout_s: float = 30.0) -> None:
        """Park: decelerate the current move, de-energise, leave unfinished rounds queued for restart."""
        self._parking.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._checkpoints.close()
        self.driver.close()

    def _beat(self) -> None:
        # Called while waiting for the buffer: waiting is not hanging.
        self.last_beat = time.monotonic()

    def _run(self) -> None:
        try:
            command: ActiveCommand | None = None
            generation = 0
            while not self._parking.is_set():
                self.last_beat = time.monotonic()
                if command is None:
                    try:
                        command, generation = self._take()
                    except BufferUnavailable:
                        # Not retried under the lock: a stop RPC meanwhile must get its UNAVAILABLE reply.
                        self._parking.wait(0.5)
                        continue
                    if command is None:
                        self._wait_for_work()
                        continue
                command, generation = self._execute(command, generation)
                if command is None and self._idle:
                    # The finish found the queue empty: the next command comes with a submit's
                    # wake (begun and handed over), not from asking Redis again now.
                    self._wait_for_work()
        except Exception:
            # A driver (GPIO) failure: report it, drop the coils, stop moving until restarted.
            self.faulted = True
            log.exception("motor fault", motor=self.name)
            try:
                self.driver.release()
            finally:
                retry_until_available(
                    lambda: self._ledger.report(self.name, MotorState.FAULT), should_stop=lambda: True
                )

    def _wait_for_work(self) -> None:
        """Until a submit, stop, hold or resume wakes the motor, or the idle poll comes round."""
        self._wake.wait(self._idle_poll_s)
        self._wake.clear()

    def _take(self) -> tuple[ActiveCommand | None, int]:
        """The next command; None while idle or held (at rest, the hold is stored and reported once)."""
        with self._lock:
            if not self._stored_hold_read:
                stored = self._ledger.hold_reason(self.name)
                if stored is HoldReason.ESTOP:
                    self._estop_hold = True
                elif stored is HoldReason.OPERATOR:
                    self._operator_hold = True
                self._stored_hold_read = True
            reason = self.hold_reason
            handed, self._handed = self._handed, None
            if reason is None:
                if handed is not None and handed[1] == self._generation:
                    return handed
                # Nothing handed over, or stopped since its submit: the ledger knows where it stands.
                command = self._ledger.begin(self.name)
                self._idle = command is None
                return command, self._generation
            if reason is not self._reported_hold:
                self._ledger.hold(self.name, reason)
                self._reported_hold = reason
            return None, self._generation

    def _unwritten_bound(self, cid: str) -> int:
        """The furthest position the motor may come to rest at: its written checkpoint plus
        max_unwritten pulses, so a kill -9 repeats no more, the deceleration included."""
        return self._checkpoints.written(cid) + self._max_unwritten

    @staticmethod
    def _next_pulse_passes(bound: int, position: int, ramp: TrapezoidRamp) -> bool:
        """Whether one more pulse could leave the motor, once at rest, past ``bound``: the pulse moves
        it one step and can lengthen its stop by one more."""
        return position + ramp.steps_to_stop() + 2 > bound

    def _checkpoint(self, cid: str, before: int, done: int, total: int) -> None:
        """Hands a checkpoint to the writer thread each ``checkpoint_every`` pulses; the last pulse's
        is written by :meth:`_finish`, with the next command's start."""
        every = self._checkpoint_every
        if done // every != before // every and done < total:
            self._checkpoints.post(cid, done)

    def _finish(self, cid: str, pulses: int, halted: Callable[[], bool]) -> tuple[ActiveCommand | None, int]:
        """Writes the checkpoint of the command's last pulse and takes the next command in the same
        script (none while held or parking): ordered against a stop by the lock, as _take is.
        Retried while the buffer is down: these pulses turned, and the next begin must see them."""

        def finish() -> tuple[ActiveCommand | None, int]:
            with self._lock:
                begin_next = not halted()
                nxt = self._ledger.finish(
                    self.name, cid, pulses, self.profile.steps_per_round, begin_next=begin_next
                )
                self._idle = begin_next and nxt is None
                return nxt, self._generation

        result = retry_until_available(finish, should_stop=lambda: False, waiting=self._beat)
        assert result is not None  # should_stop never says stop
        return result

    def _turn(self, ramp: TrapezoidRamp, cid: str, done: int, total: int, halted: Callable[[], bool]) -> int:
        """The Python loop times each pulse; returns the pulses done when the ramp ends."""
        # Each interval counts from the real previous pulse, never from a planned one: a late pulse
        # is not made up by firing the next ones sooner (a burst loses steps).
        last_pulse = self._clock.now()
        while not ramp.done:
            if halted() or self._next_pulse_passes(self._unwritten_bound(cid), done, ramp):
                ramp.stop()
                if ramp.remaining == 0:
                    break
            interval = ramp.next_interval()
            due = last_pulse + interval
            self._clock.sleep_until(due)
            self.driver.step()
            now = self._clock.now()
            if now - due > interval * self.profile.late_replan_intervals:
                ramp.took(now - last_pulse)
            last_pulse = now
            self._checkpoint(cid, done, done + 1, total)
            done += 1
            self.last_beat = time.monotonic()
        return done

    def _turn_train(
        self,
        train: PulseTrain,
        ramp: TrapezoidRamp,
        cid: str,
        done: int,
        total: int,
        halted: Callable[[], bool],
    ) -> int:
        """The ramp planned in segments that the backend's timer plays back; pulses count as turned
        once their segment has played. Returns the pulses done when the ramp ends."""
        clock = self._clock
        queued: deque[tuple[float, int]] = deque()  # (planned end, pulses) of each queued segment
        queued_until = clock.now()
        last_interval = 0.0  # 0 until the first segment is queued
        while not ramp.done or queued:
            now = clock.now()
            while queued and queued[0][0] + TRAIN_COUNT_MARGIN_S <= now:
                turned = queued.popleft()[1]
                self._checkpoint(cid, done, done + turned, total)
                done += turned
            self.last_beat = time.monotonic()
            if not ramp.done and halted():
                ramp.stop()
            if not ramp.done and queued_until - now < TRAIN_AHEAD_S and train.room() > 0:
                # The train ran dry (the loop came late): the next pulse is late by the gap, and
                # the ramp re-plans after it as the Python loop does after a late pulse.
                gap = now - queued_until if last_interval > 0 else 0.0
                # Queued pulses play whatever happens next: the bound counts them as turned. Read
                # once a segment: planning takes microseconds, and the bound only grows meanwhile.
                position = done + sum(pulses for _, pulses in queued)
                bound = self._unwritten_bound(cid)
                segment: list[float] = []
                planned_s = 0.0
                while not ramp.done and planned_s < TRAIN_SEGMENT_S:
                    if self._next_pulse_passes(bound, position + len(segment), ramp):
                        ramp.stop()
                        if ramp.remaining == 0:
                            break
                    segment.append(ramp.next_interval())
                    if len(segment) == 1 and gap > segment[0] * self.profile.late_replan_intervals:
                        ramp.took(gap + segment[0])
                    planned_s += segment[-1]
                if segment:
                    queued_until = max(queued_until, now) + train.send(segment)
                    queued.append((queued_until, len(segment)))
                    last_interval = segment[-1]
                continue
            wake = queued[0][0] + TRAIN_COUNT_MARGIN_S if queued else now
            if not ramp.done:
                wake = min(wake, queued_until - TRAIN_AHEAD_S)
            clock.sleep_past(max(wake, now + TRAIN_SEGMENT_S / 10))
        return done

    def _execute(self, command: ActiveCommand, generation: int) -> tuple[ActiveCommand | None, int]:
        """Runs ``command``; returns the next one when it finished and the ledger began the next."""
        spr = self.profile.steps_per_round
        rate = self.profile.rate_for(command.speed_rpm)
        total = command.rounds * spr
        done = max(command.pulses_done, command.rounds_done * spr)
        cid = command.command_id
        checkpoints = self._checkpoints
        checkpoints.begin(cid, done)

        def halted() -> bool:
            return (
                self._parking.is_set()
                or generation != self._generation
                or self._estop_hold
                or self._operator_hold
            )

        self.driver.set_forward(True)
        self.driver.energise()
        train = self.driver if isinstance(self.driver, PulseTrain) else None
        log.info(
            "command started",
            motor=self.name,
            command_id=cid,
            pulses=total - done,
            timing="lgpio pulse train" if train else "python loop",
        )
        while done < total and not halted():
            ramp = TrapezoidRamp(total - done, rate, self.profile.accel_sps2)
            if train is not None:
                done = self._turn_train(train, ramp, cid, done, total, halted)
            else:
                done = self._turn(ramp, cid, done, total, halted)
            if done < total and not halted():
                # Stopped because the checkpoints fell behind (the buffer is down or stalled): at
                # rest, wait for them, then accelerate again from rest.
                checkpoints.flush(self._beat, halted)
        self.driver.release()
        log.info("command ended", motor=self.name, command_id=cid)
        if done >= total:
            return self._finish(cid, done, halted)
        if done % self._checkpoint_every != 0:
            checkpoints.post(cid, done)  # parked or stopped between checkpoints: keep the exact count
        # The next begin() must see where parking or the stop left this command.
        checkpoints.flush(self._beat, lambda: False)
        return None, generation
