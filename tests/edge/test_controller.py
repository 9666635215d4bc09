"""Motor controllers on the simulated driver: order, resume after a crash, stop, park, step timing."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import threading
import time

import pytest
import redis as redis_lib

from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox
from edge.motor.checkpoint import CheckpointPolicy
from edge.motor.clock import MonotonicClock, ScaledClock
from edge.motor.controller import MotionProfile, MotorController
from edge.motor.simulated import SimulatedDriver, SimulatedPulseTrain
from edge.rpc import RpcService
from giftwheel.contracts.motor import MotorState
from tests.edge.motion import JumpyClock, assert_no_burst

FAST = MotionProfile(steps_per_round=200, max_rate_sps=2000.0, accel_sps2=20_000.0)


def controller(ledger: CommandLedger, profile: MotionProfile = FAST, scale: float = 20.0) -> MotorController:
    clock = ScaledClock(scale)
    motor = MotorController("m1", SimulatedDriver(clock), ledger, profile, clock, idle_poll_s=0.05)
    motor.start()
    return motor


def test_commands_run_in_order_with_exact_rounds(ledger: CommandLedger) -> None:
    ledger.submit("m1", "c-00000001", 3, None)
    ledger.submit("m1", "c-00000002", 2, 30.0)
    motor = controller(ledger)
    wait_until(lambda: ledger.status("m1").commands_done == 2)
    motor.close()
    driver = motor.driver
    assert isinstance(driver, SimulatedDriver)
    assert driver.net_steps == 5 * 200
    assert not driver.energised
    status = ledger.status("m1")
    assert (status.state, status.rounds_completed, status.queued_rounds) == (MotorState.IDLE, 5, 0)
    # The second command ran at its own speed: 30 rpm x 200 steps = 100 steps/s in the cruise.
    times = [t for t, _ in list(driver.steps)[-200:]]
    cruise = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(cruise) == pytest.approx(0.01, rel=0.1)


def test_parking_resumes_the_remaining_pulses_not_all(ledger: CommandLedger) -> None:
    ledger.submit("m1", "c-00000003", 6, None)
    first = controller(ledger, scale=5.0)
    wait_until(lambda: ledger.status("m1").rounds_completed >= 2)
    first.close()  # parks mid-command: decelerates, writes the exact pulse count, keeps the rest queued
    done_before = ledger.status("m1").rounds_completed
    assert 2 <= done_before < 6
    assert ledger.status("m1").queued_rounds == 6 - done_before
    second = controller(ledger)
    wait_until(lambda: ledger.status("m1").commands_done == 1)
    second.close()
    assert isinstance(first.driver, SimulatedDriver)
    assert isinstance(second.driver, SimulatedDriver)
    assert first.driver.total_steps + second.driver.total_steps == 6 * 200
    assert ledger.status("m1").rounds_completed == 6


def test_stop_clears_the_queue_and_halts_with_a_ramp(ledger: CommandLedger) -> None:
    ledger.submit("m1", "c-00000004", 50, None)
    ledger.submit("m1", "c-00000005", 10, None)
    motor = controller(ledger, scale=2.0)
    wait_until(lambda: ledger.status("m1").rounds_completed >= 1)
    cleared = motor.stop_all()
    assert cleared.command_ids == ["c-00000004", "c-00000005"]
    wait_until(lambda: not motor.driver.energised)  # type: ignore[attr-defined]
    steps_at_halt = motor.driver.total_steps  # type: ignore[attr-defined]
    time.sleep(0.2)
    motor.close()
    assert motor.driver.total_steps == steps_at_halt  # type: ignore[attr-defined]
    status = ledger.status("m1")
    assert status.state is MotorState.STOPPED
    assert status.queued_rounds == 0
    assert cleared.rounds == 60 - status.rounds_completed
    # The halt was a deceleration: the last intervals grow.
    times = [t for t, _ in list(motor.driver.steps)[-20:]]  # type: ignore[attr-defined]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Medians, so one scheduling hiccup on a loaded box cannot decide it: the last steps are ~9x
    # slower than the ones 20 steps before the halt.
    assert statistics.median(gaps[-3:]) > 2 * statistics.median(gaps[:10])


@pytest.mark.slow
def test_real_clock_ramp_shape_without_bursts(ledger: CommandLedger) -> None:
    """Real time, bounded to ~3 s: 2,400 steps at 1,000 steps/s with 4,000 steps/s^2.

    Medians and bounds, not the mean rate: an exact average can hide a burst, and a descheduled
    loop on a busy box is a late step (re-planned), never made up."""
    profile = MotionProfile(steps_per_round=400, max_rate_sps=1000.0, accel_sps2=4000.0)
    clock = MonotonicClock()
    driver = SimulatedDriver(clock)
    ledger.submit("m1", "c-00000006", 6, None)
    motor = MotorController("m1", driver, ledger, profile, clock, idle_poll_s=0.05)
    motor.start()
    wait_until(lambda: ledger.status("m1").commands_done == 1, timeout_s=20)
    motor.close()
    times = [t for t, _ in driver.steps]
    assert len(times) == 2400
    assert_no_burst(times, profile)
    ramp_steps = 125  # v^2 / 2a
    cruise = [b - a for a, b in itertools.pairwise(times[ramp_steps + 5 : -ramp_steps - 5])]
    # One-sided: a busy box makes the Python loop late (slower, re-planned), never faster.
    assert statistics.median(cruise) >= 1 / 1000.0 * 0.98
    # Acceleration: reaching full speed takes v/a = 0.25 s, and the first step sqrt(2/a) = 22 ms.
    assert times[ramp_steps] - times[0] >= (0.25 - 0.0224) * 0.85
    windows = [
        statistics.median(b - a for a, b in itertools.pairwise(times[i : i + 21])) for i in (0, 40, 80)
    ]
    # The start is never faster than the plan (steps 1-20 at v = sqrt(2an): median ~ 1/sqrt(2a*11));
    # it does speed up, but a busy box may make any later window slower, so only one must be faster.
    assert windows[0] >= 0.95 / math.sqrt(2 * 4000.0 * 11)
    assert min(windows[1:]) < windows[0]
    assert min(windows) > 1 / 1000.0
    # Deceleration mirrors it.
    assert times[-1] - times[-1 - ramp_steps] >= 0.25 * 0.85
    # Never faster than the ramp allows in total.
    assert times[-1] - times[0] >= 2400 / 1000.0 + 1000.0 / 4000.0 - 2 * 0.0224


def test_late_steps_are_never_made_up_by_a_burst(ledger: CommandLedger) -> None:
    """1 in 50 sleeps overruns by up to 90 ms (stalls like a busy box's): the motor re-plans, never bursts."""
    rng = random.Random(19)
    late = {n: rng.uniform(1e-6, 0.09) for n in range(1, 5000) if rng.random() < 0.02}
    clock = JumpyClock(late)
    driver = SimulatedDriver(clock)
    profile = MotionProfile(steps_per_round=200, max_rate_sps=3200.0, accel_sps2=64_000.0)
    ledger.submit("m1", "c-0000b001", 8, None)
    motor = MotorController("m1", driver, ledger, profile, clock, idle_poll_s=0.05)
    motor.start()
    wait_until(lambda: ledger.status("m1").commands_done == 1)
    motor.close()
    times = [t for t, _ in driver.steps]
    assert len(times) == 8 * 200
    assert_no_burst(times, profile)
    # It did get back to full speed between the stalls.
    assert min(b - a for a, b in itertools.pairwise(times)) == pytest.approx(1 / 3200.0)


@pytest.mark.parametrize("timing", ["python loop", "pulse train"])
def test_a_stalled_buffer_delays_checkpoints_not_pulses(
    ledger: CommandLedger, sync_redis: redis_lib.Redis, timing: str
) -> None:
    """The local Redis takes no write for 4 s (CLIENT PAUSE WRITE, as a long fsync would): the motor
    turns on past a round boundary while its checkpoints wait, comes to rest within the unwritten
    bound instead of running away (its deceleration and queued segments inside the bound), and
    afterwards every pulse is counted exactly once."""
    # Every 20 pulses; up to 500 unwritten. The bound leaves room for the checkpoint writer to lag
    # the motor by a few hundred pulses when the paused write catches it (it shares the GIL).
    policy = CheckpointPolicy(fraction_of_round=0.1, max_unwritten_rounds=2.5)
    ledger.submit("m1", "c-0000c001", 6, None)
    clock = ScaledClock(20.0)
    driver = SimulatedDriver(clock)
    stepper = SimulatedPulseTrain(driver, clock) if timing == "pulse train" else driver
    motor = MotorController("m1", stepper, ledger, FAST, clock, checkpoints=policy, idle_poll_s=0.05)
    motor.start()
    wait_until(lambda: driver.total_steps > 0)  # begin() is written
    sync_redis.execute_command("CLIENT", "PAUSE", 4000, "WRITE")  # type: ignore[no-untyped-call]
    paused_at = driver.total_steps
    written_at_pause = int(sync_redis.hget(ledger.keys.motor("m1"), "pd") or 0)
    next_round = (paused_at // 200 + 1) * 200
    wait_until(lambda: driver.total_steps > next_round, timeout_s=3.5)
    # Still paused: no checkpoint was written meanwhile, yet the motor crossed a round boundary.
    assert int(sync_redis.hget(ledger.keys.motor("m1"), "pd") or 0) == written_at_pause
    time.sleep(0.4)  # at rest by now, stopped by the bound
    assert driver.total_steps <= written_at_pause + policy.max_unwritten_pulses(200)
    wait_until(lambda: ledger.status("m1").commands_done == 1, timeout_s=20)
    motor.close()
    assert driver.total_steps == 6 * 200
    assert ledger.status("m1").rounds_completed == 6


class BrokenDriver(SimulatedDriver):
    """A GPIO call that fails mid-move (e.g. the chip was claimed by another process)."""

    def step(self) -> None:
        if self.total_steps >= 50:
            raise OSError("GPIO busy")
        super().step()


def test_driver_failure_is_a_reported_fault_with_coils_released(ledger: CommandLedger) -> None:
    clock = ScaledClock(20.0)
    driver = BrokenDriver(clock)
    motor = MotorController("m1", driver, ledger, FAST, clock, idle_poll_s=0.05)
    motor.start()
    service = RpcService({"m1": motor}, ledger)
    service.handle("m1", "rotate", {"commandId": "c-0000fa01", "rounds": 2})
    wait_until(lambda: motor.faulted and not motor.alive)
    assert not driver.energised
    assert ledger.status("m1").state is MotorState.FAULT
    reply = service.handle("m1", "rotate", {"commandId": "c-0000fa02", "rounds": 1})
    assert reply["error"] == "MOTOR_FAULT"
    motor.close()


def test_an_idle_motor_takes_a_submitted_command_from_the_submit(
    ledger: CommandLedger, outbox: Outbox
) -> None:
    """The submit begins an idle motor's command and hands it over: it turns, with one start entry and
    no queued one; a command submitted while one turns is queued and begun by the finish."""
    motor = controller(ledger, scale=5.0)
    try:
        wait_until(lambda: motor._idle)
        first = motor.submit("c-00000011", 3, None)
        assert first.begun is not None
        second = motor.submit("c-00000012", 1, None)
        assert second.begun is None
        wait_until(lambda: ledger.status("m1").commands_done == 2)
    finally:
        motor.close()
    assert motor.driver.total_steps == 4 * 200  # type: ignore[attr-defined]
    entries = [e.values for e in outbox.read(1000) if e.values.get("commandId")]
    starts = [v["commandId"] for v in entries if "startedTs" in v and not v["commandDone"]]
    queued = [v["commandId"] for v in entries if "startedTs" not in v and v["commandRoundsDone"] == 0]
    assert starts == ["c-00000011", "c-00000012"]
    assert queued == ["c-00000012"]


def test_a_held_motor_queues_a_submit_and_turns_it_after_the_resume(ledger: CommandLedger) -> None:
    motor = controller(ledger)
    try:
        wait_until(lambda: motor._idle)
        motor.hold()
        result = motor.submit("c-00000013", 2, None)
        assert result.begun is None
        time.sleep(0.2)
        assert motor.driver.total_steps == 0  # type: ignore[attr-defined]
        motor.resume()
        wait_until(lambda: ledger.status("m1").commands_done == 1)
    finally:
        motor.close()
    assert motor.driver.total_steps == 2 * 200  # type: ignore[attr-defined]


def test_a_stop_right_after_a_handed_over_submit_turns_nothing(ledger: CommandLedger) -> None:
    """Submit and stop both land before the motor thread takes the handed-over command (its wake-up
    held back): the stop's new generation drops it, and the ledger says it was cleared."""
    clock = ScaledClock(20.0)
    motor = MotorController("m1", SimulatedDriver(clock), ledger, FAST, clock, idle_poll_s=10.0)
    motor.start()
    try:
        wait_until(lambda: motor._idle)
        waiting, motor._wake = motor._wake, threading.Event()  # the thread sleeps on the old one
        assert motor.submit("c-00000014", 5, None).begun is not None
        assert motor.stop_all().command_ids == ["c-00000014"]
        waiting.set()
        wait_until(lambda: motor._idle)
        assert ledger.status("m1").commands_done == 0
    finally:
        motor.close()
    assert motor.driver.total_steps == 0  # type: ignore[attr-defined]
