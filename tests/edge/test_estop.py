"""The emergency stop button on gpiozero's MockFactory pins, motors on the simulated driver, the
ledger in a real Redis: a press stops every motor with a ramp, a release lifts nothing, the resume
RPC turns what was left exactly once; the hold outlives a restart and a kill -9 of the daemon."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from devstack.edge_process import EdgeDaemon, recorded_steps, simulated_config
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from edge.buffer.ledger import CommandLedger, HoldReason
from edge.buffer.outbox import Outbox
from edge.daemon import Supervisor
from edge.errors import ConfigError
from edge.estop import EmergencyStop, open_contact
from edge.motor.clock import ScaledClock
from edge.motor.controller import MotionProfile, MotorController
from edge.motor.simulated import SimulatedDriver
from edge.rpc import RpcService
from edge.runtime import EdgeRuntime
from edge.settings import EStopSettings, parse_settings
from giftwheel.contracts.motor import MotorState, RpcError
from tests.notify_socket import notify_socket, until

PROFILE = MotionProfile(steps_per_round=200, max_rate_sps=2000.0, accel_sps2=20_000.0)
# From full speed the ramp stops within v^2 / 2a pulses.
STOP_PULSES = round(PROFILE.max_rate_sps**2 / (2 * PROFILE.accel_sps2))
ESTOP_PIN = 26


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} not met within {timeout_s} s")


def motor(name: str, ledger: CommandLedger) -> MotorController:
    clock = ScaledClock(2.0)
    return MotorController(name, SimulatedDriver(clock), ledger, PROFILE, clock, idle_poll_s=0.05)


def steps(controller: MotorController) -> int:
    driver = controller.driver
    assert isinstance(driver, SimulatedDriver)
    return driver.total_steps


def at_rest(controller: MotorController) -> Callable[[], bool]:
    driver = controller.driver
    assert isinstance(driver, SimulatedDriver)
    return lambda: not driver.energised


@dataclass
class Rig:
    ledger: CommandLedger
    outbox: Outbox
    motors: dict[str, MotorController]
    rpc: RpcService
    contact: Any  # gpiozero's DigitalInputDevice on a mock pin
    estop: EmergencyStop

    def press(self) -> None:
        self.contact.pin.drive_high()  # the normally closed contact opens: the pull-up reads high

    def release(self) -> None:
        self.contact.pin.drive_low()

    def call(self, device: str, method: str, **params: Any) -> dict[str, Any]:
        return self.rpc.handle(device, method, params)

    def telemetry(self, device: str) -> list[dict[str, Any]]:
        return [e.values for e in self.outbox.read(100_000) if e.device == device]


@pytest.fixture
def rig(ledger: CommandLedger, outbox: Outbox) -> Iterator[Rig]:
    factory = MockFactory()
    contact = open_contact(EStopSettings(pin=ESTOP_PIN, bounce_ms=0), factory)
    motors = {name: motor(name, ledger) for name in ("m1", "m2")}
    estop = EmergencyStop(contact, list(motors.values()))
    contact.pin.drive_low()  # a closed contact: not engaged at start
    estop.start()
    for m in motors.values():
        m.start()
    yield Rig(ledger, outbox, motors, RpcService(motors, ledger), contact, estop)
    for m in motors.values():
        m.close()
    estop.close()
    factory.close()


def test_press_stops_every_motor_release_lifts_nothing_resume_turns_the_rest_once(rig: Rig) -> None:
    assert rig.call("m1", "rotate", commandId="c-e5700001", rounds=20)["queuedRounds"] == 20
    assert rig.call("m2", "rotate", commandId="c-e5700002", rounds=20)["queuedRounds"] == 20
    wait_for(lambda: rig.ledger.status("m1").rounds_completed >= 2, what="m1 turning")
    wait_for(lambda: rig.ledger.status("m2").rounds_completed >= 2, what="m2 turning")
    at_press = {name: steps(m) for name, m in rig.motors.items()}

    rig.press()
    for name, m in rig.motors.items():
        wait_for(at_rest(m), what=f"{name} at rest")
        wait_for(lambda: rig.ledger.status(name).state is MotorState.STOPPED_BY_ESTOP)  # noqa: B023
    stopped = {name: steps(m) for name, m in rig.motors.items()}
    for name in rig.motors:
        # A ramp down, not a cut: at most the pulses a stop from full speed takes (one more in flight).
        assert 0 < stopped[name] - at_press[name] <= STOP_PULSES + 1, (name, at_press, stopped)
        assert stopped[name] < 20 * 200
        assert rig.ledger.hold_reason(name) is HoldReason.ESTOP
        # Reported at the press (the button with the hold) and again at rest (the state).
        reports = rig.telemetry(name)
        assert {"estop": "engaged", "state": "stopped_by_estop"} in [
            {k: v for k, v in r.items() if k in ("estop", "state")} for r in reports
        ]
        assert reports[-1]["state"] == "stopped_by_estop"

    # While engaged: a gift is queued, not turned; a resume is refused.
    reply = rig.call("m1", "rotate", commandId="c-e5700003", rounds=3)
    assert (reply["queuedRounds"], reply["held"]) == (20 - stopped["m1"] // 200 + 3, True)
    assert rig.call("m1", "resume")["error"] == RpcError.ESTOP_ENGAGED.value

    rig.release()
    wait_for(lambda: rig.telemetry("m1")[-1].get("estop") == "released", what="release reported")
    time.sleep(0.3)
    assert {name: steps(m) for name, m in rig.motors.items()} == stopped
    assert rig.ledger.status("m1").state is MotorState.STOPPED_BY_ESTOP

    assert rig.call("m1", "resume") == {"resumed": True, "queuedRounds": 20 - stopped["m1"] // 200 + 3}
    wait_for(lambda: rig.ledger.status("m1").commands_done == 2, what="m1 resumed and done")
    # m2 was not resumed: it stays where the button left it.
    assert steps(rig.motors["m2"]) == stopped["m2"]
    assert rig.ledger.status("m2").state is MotorState.STOPPED_BY_ESTOP
    assert rig.call("m2", "resume")["resumed"] is True
    wait_for(lambda: rig.ledger.status("m2").commands_done == 1, what="m2 resumed and done")

    # Exactly what was commanded, each pulse once: the remainder resumed from its checkpoint.
    assert steps(rig.motors["m1"]) == 23 * 200
    assert steps(rig.motors["m2"]) == 20 * 200
    assert rig.ledger.status("m1").rounds_completed == 23
    assert rig.call("m1", "resume") == {"resumed": False, "queuedRounds": 0}


def test_the_hold_is_stored_and_a_restarted_motor_starts_held(rig: Rig, ledger: CommandLedger) -> None:
    rig.press()
    wait_for(lambda: ledger.status("m1").state is MotorState.STOPPED_BY_ESTOP)
    rig.release()
    rig.motors["m1"].close()

    again = motor("m1", ledger)  # a new daemon's controller: the button is not even read
    ledger.submit("m1", "c-e5700004", 2, None)
    again.start()
    try:
        time.sleep(0.5)
        assert steps(again) == 0
        assert ledger.status("m1").state is MotorState.STOPPED_BY_ESTOP
        assert RpcService({"m1": again}, ledger).handle("m1", "resume", {})["resumed"] is True
        wait_for(lambda: ledger.status("m1").commands_done == 1)
        assert steps(again) == 2 * 200
    finally:
        again.close()


def test_hold_rpc_keeps_the_queue_stop_keeps_the_hold(rig: Rig) -> None:
    rig.call("m1", "rotate", commandId="c-e5700005", rounds=20)
    wait_for(lambda: rig.ledger.status("m1").rounds_completed >= 1)
    assert rig.call("m1", "hold")["state"] == "held"
    wait_for(at_rest(rig.motors["m1"]))
    wait_for(lambda: rig.ledger.status("m1").state is MotorState.HELD)
    held_at = steps(rig.motors["m1"])
    queued = rig.ledger.status("m1").queued_rounds
    assert 0 < queued < 20
    time.sleep(0.2)
    assert steps(rig.motors["m1"]) == held_at

    # The button over a hold: the stronger one shows, and resume waits for the release.
    rig.press()
    wait_for(lambda: rig.ledger.status("m1").state is MotorState.STOPPED_BY_ESTOP)
    rig.release()

    cleared = rig.call("m1", "stop")
    assert cleared["clearedRounds"] == queued
    assert rig.ledger.status("m1").state is MotorState.STOPPED_BY_ESTOP  # stop clears, the hold stays
    assert rig.call("m1", "resume") == {"resumed": True, "queuedRounds": 0}
    assert rig.ledger.status("m1").state is MotorState.IDLE
    assert steps(rig.motors["m1"]) == held_at


def base_config(**estop: Any) -> dict[str, Any]:
    return {
        "thingsboard": {"access_token": "t"},
        "motors": [
            {
                "name": "m1",
                "driver": "a4988",
                "pins": {"step": 17, "dir": 27},
                "steps_per_round": 200,
                "max_step_rate_sps": 1000,
                "acceleration_sps2": 5000,
            }
        ],
        "estop": estop,
    }


@pytest.mark.parametrize(
    ("estop", "message"),
    [
        ({"pin": 14}, "estop.pin: pin 14 is reserved: TXD of the primary UART"),
        ({"pin": 27}, "estop.pin: pin 27 is already used by motors[0].pins.dir"),
        ({"pin": 26, "bounce_ms": -1}, "estop.bounce_ms"),
        ({"pin": 26, "pull_up": "yes"}, "estop.pull_up"),
    ],
)
def test_a_bad_estop_config_names_the_field(estop: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_settings(base_config(**estop))


def test_an_estop_stopped_daemon_killed_9_comes_back_stopped(
    tmp_path: Path, redis_server: RedisServer, ledger: CommandLedger, outbox: Outbox
) -> None:
    """In simulation the button is a mock pin with nothing wired: it reads open, engaged."""
    plain = simulated_config(tmp_path, redis_server.url, free_port(), log_level="WARNING")
    with_estop = plain | {"estop": {"pin": ESTOP_PIN}}
    ledger.submit("motor_01", "c-e5700006", 3, None)
    with EdgeDaemon(with_estop, tmp_path):
        wait_for(lambda: ledger.hold_reason("motor_01") is HoldReason.ESTOP, 30, "held at start")
        time.sleep(0.5)
    # Killed -9 while e-stopped, restarted without the button: still held, nothing turned.
    assert recorded_steps(tmp_path, "motor_01") == 0
    reported = len(outbox)
    with EdgeDaemon(plain, tmp_path):
        wait_for(lambda: len(outbox) > reported, 30, "the restarted motor reporting its hold")
        time.sleep(0.5)
        assert recorded_steps(tmp_path, "motor_01") == 0
        assert ledger.status("motor_01").state is MotorState.STOPPED_BY_ESTOP
    # The stored hold is what kept it: lifted (as a resume does), the next run turns the gift once.
    ledger.hold("motor_01", None)
    with EdgeDaemon(plain, tmp_path):
        wait_for(lambda: ledger.status("motor_01").commands_done == 1, 30, "turned after the hold")
    assert recorded_steps(tmp_path, "motor_01") == 3 * 200


def test_systemd_status_names_the_pressed_button_and_the_held_motors(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline = b"STATUS=ThingsBoard unreachable; running the local queue offline"
    with notify_socket(tmp_path, timeout_s=5, watchdog_s=1) as (notify, env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = simulated_config(
            tmp_path, redis_server.url, free_port(), offline_ready_after_s=0, estop={"pin": ESTOP_PIN}
        )
        runtime = EdgeRuntime(parse_settings(config))
        runtime.start()  # nothing wired in simulation: the button reads pressed
        supervisor = Supervisor(runtime, 0, 60)
        supervisor.start()
        try:
            held = b"; held until resumed: motor_01, motor_02"
            assert (
                until(notify, b"READY=1")[-1] == b"READY=1\n" + offline + b"; emergency stop pressed" + held
            )
            assert runtime.estop is not None
            runtime.estop._contact.pin.drive_low()  # the contact closes: released
            assert until(notify, b"STATUS=")[-1] == offline + held
            for motor in runtime.controllers.values():
                motor.resume()
            assert until(notify, b"STATUS=")[-1] == offline
        finally:
            supervisor.close()
            runtime.close()
