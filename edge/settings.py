"""The edge config file (YAML): validated once at start-up, then passed in; errors name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from redis.connection import parse_url

from edge.buffer.ledger import DEFAULT_RECENT_DONE
from edge.errors import ConfigError
from edge.motor.checkpoint import DEFAULT_CHECKPOINT_FRACTION, DEFAULT_MAX_UNWRITTEN_ROUNDS, CheckpointPolicy
from edge.motor.controller import DEFAULT_LATE_REPLAN_FULL_STEPS
from edge.motor.driver import DRIVER_SPECS, DriverType, Wiring
from edge.motor.pins import BACKENDS, PinBackend
from edge.motor.ramp import steps_to_stop
from giftwheel.contracts.motor import MOTOR_PROFILE, RECENT_DONE_LIMIT, DeviceName

# Header pins the Pi itself uses: the firmware reads the HAT ID EEPROM over ID_SD/ID_SC at boot
# (Raspberry Pi HAT+ specification), and GPIO14/15 are the primary UART (serial console; pulses
# on them garble it, and its traffic would step a motor).
RESERVED_PINS = {
    0: "ID_SD (the HAT ID EEPROM)",
    1: "ID_SC (the HAT ID EEPROM)",
    14: "TXD of the primary UART",
    15: "RXD of the primary UART",
}


def _not_reserved(pin: int) -> int:
    if pin in RESERVED_PINS:
        raise ValueError(f"pin {pin} is reserved: {RESERVED_PINS[pin]}")
    return pin


BcmPin = Annotated[int, Field(ge=0, le=27), AfterValidator(_not_reserved)]


def _redis_url(url: str) -> str:
    try:
        # What redis.Redis.from_url does first; its ValueError says what is wrong.
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a Redis URL: {exc}") from None
    return url


class _Strict(BaseModel):
    # strict: YAML gives numbers and booleans their own types, so `max_step_rate_sps: true` or
    # `enable_active_low: 1` is a mistake to refuse, not a value to coerce (True would be 1 step/s).
    # Paths and enums are read from their strings (strict=False on those fields).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ThingsBoardSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    access_token: SecretStr | None = Field(default=None, strict=False)
    access_token_file: Path | None = Field(default=None, strict=False)
    keepalive_s: int = Field(default=120, ge=10, le=600)
    # The device type announced for each motor (v1/gateway/connect). ThingsBoard creates a motor it
    # does not know yet with this type, on the device profile of that name (a new, empty one if none
    # exists), and the shipped rule chain feeds the cloud from the "motor" profile only: another value
    # is for a deployment whose profile and chain say so too.
    motor_profile: DeviceName = MOTOR_PROFILE

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        if (self.access_token is None) == (self.access_token_file is None):
            raise ValueError("set exactly one of access_token or access_token_file")
        return self

    def token(self) -> str:
        if self.access_token is not None:
            return self.access_token.get_secret_value()
        assert self.access_token_file is not None
        try:
            token = self.access_token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"thingsboard.access_token_file: cannot read {self.access_token_file}: {exc}"
            ) from exc
        if not token:
            raise ConfigError(f"thingsboard.access_token_file: {self.access_token_file} is empty")
        return token


class MotorPins(_Strict):
    step: BcmPin | None = None
    dir: BcmPin | None = None
    enable: BcmPin | None = None
    coils: Annotated[list[BcmPin], Field(min_length=4, max_length=4)] | None = None

    def named(self) -> list[tuple[str, int]]:
        pins = [
            (n, p)
            for n, p in (("step", self.step), ("dir", self.dir), ("enable", self.enable))
            if p is not None
        ]
        return pins + [(f"coils[{i}]", p) for i, p in enumerate(self.coils or [])]


class MotorSettings(_Strict):
    name: DeviceName  # the ThingsBoard device name
    driver: DriverType = Field(strict=False)
    pins: MotorPins
    steps_per_round: int = Field(ge=1, le=1_000_000, description="full steps per output round")
    microstepping: int = Field(default=1, ge=1, le=256)
    max_step_rate_sps: float = Field(gt=0)
    acceleration_sps2: float = Field(gt=0)
    direction: Literal["cw", "ccw"] = "cw"
    enable_active_low: bool = True
    # How long each STEP pulse is held high, in microseconds; unset: the driver's datasheet minimum.
    step_high_us: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _fits_the_driver(self) -> Self:
        spec = DRIVER_SPECS[self.driver]
        p = self.pins
        if spec.wiring is Wiring.STEP_DIR:
            missing = [n for n, v in (("step", p.step), ("dir", p.dir)) if v is None]
            if missing:
                raise ValueError(f"pins.{missing[0]}: required for driver {self.driver.value}")
            if p.coils is not None:
                raise ValueError(f"pins.coils: not used by driver {self.driver.value} (step/dir wiring)")
        else:
            if p.coils is None:
                raise ValueError(f"pins.coils: driver {self.driver.value} needs four coil pins")
            if p.step is not None or p.dir is not None:
                raise ValueError(
                    f"pins.step/pins.dir: not used by driver {self.driver.value} (four coil pins)"
                )
            if self.step_high_us is not None:
                raise ValueError(f"step_high_us: not used by driver {self.driver.value} (no STEP input)")
        if self.microstepping not in spec.microsteps:
            choices = ", ".join(str(m) for m in spec.microsteps)
            raise ValueError(f"microstepping: {self.driver.value} can do {choices}, not {self.microstepping}")
        if self.step_high_us is not None and self.step_high_us * 1e-6 < spec.min_step_high_s:
            raise ValueError(
                f"step_high_us: {self.driver.value} needs STEP high for at least "
                f"{spec.min_step_high_s * 1e6:g} us (datasheet)"
            )
        if self.max_step_rate_sps > spec.max_step_rate_sps:
            raise ValueError(
                f"max_step_rate_sps: {self.driver.value} accepts at most {spec.max_step_rate_sps:g}"
            )
        names = [n for n, _ in p.named()]
        values = [v for _, v in p.named()]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ValueError(
                    f"pins.{names[i]}: pin {value} is already used as pins.{names[values.index(value)]}"
                )
        return self

    @property
    def step_high_s(self) -> float:
        """The STEP pulse's high time: the configured one, else the driver's minimum."""
        if self.step_high_us is None:
            return DRIVER_SPECS[self.driver].min_step_high_s
        return self.step_high_us * 1e-6

    @property
    def pulses_per_round(self) -> int:
        return self.steps_per_round * self.microstepping

    @property
    def invert_direction(self) -> bool:
        return self.direction == "ccw"


class EStopSettings(_Strict):
    """A normally closed emergency stop button on ``pin`` (edge.estop says what engaging does)."""

    pin: BcmPin
    # True: the contact goes from the pin to GND, and the Pi's internal pull-up reads it open (high)
    # when pressed. False: to 3V3, with the internal pull-down reading it open (low).
    pull_up: bool = True
    # Edges closer than this to the previous one are contact bounce, ignored (gpiozero's bounce_time).
    bounce_ms: float = Field(default=20.0, ge=0, le=1000)


class SimulationSettings(_Strict):
    enabled: bool = False
    time_scale: float = Field(default=1.0, gt=0, le=1000)
    record_dir: Path | None = Field(default=None, strict=False)  # one step log per motor (tests, bench)
    # The motors take segments of pulses, as with gpio_backend lgpio (edge.motor.simulated.
    # SimulatedPulseTrain): a simulated daemon then costs what such a Pi pays, not a Python call and a
    # write per pulse. Off: the Python loop times every pulse, as the other backends do.
    pulse_train: bool = False


class LimitSettings(_Strict):
    max_queued_rounds: int = Field(default=100_000, ge=1)
    dedupe_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    outbox_batch: int = Field(default=100, ge=1, le=1000)
    publish_timeout_s: float = Field(default=10.0, gt=0)


class EdgeSettings(_Strict):
    thingsboard: ThingsBoardSettings
    redis_url: Annotated[str, AfterValidator(_redis_url)] = "redis://127.0.0.1:6379/0"
    state_dir: Path = Field(default=Path("/var/lib/giftwheel-edge"), strict=False)
    gpio_backend: PinBackend = Field(default=PinBackend.GPIOZERO, strict=False)
    simulation: SimulationSettings = SimulationSettings()
    limits: LimitSettings = LimitSettings()
    estop: EStopSettings | None = None  # no emergency stop button
    # ThingsBoard closes sessions idle for 600 s; sub-devices are not re-announced after a reconnect.
    heartbeat_interval_s: float = Field(default=60.0, ge=1, le=300)
    # Per motor, progress telemetry at most this often (0: every round). Each message is a rule-chain
    # run and a webhook call upstream; a command's start and done are always reported at once.
    progress_interval_s: float = Field(default=0.2, ge=0, le=60)
    # After telemetry went out, the next batch waits this long, so a busy motor's entries share one
    # MQTT message and acknowledgement (at 500 gifts/s, ~3 entries per command, ~180 commands/s);
    # the first entry after a quiet spell goes at once. 0: each write is sent as soon as it is made.
    telemetry_gather_s: float = Field(default=0.01, ge=0, le=1)
    # Each motor writes its progress every this fraction of a round, off the step path: a kill -9
    # repeats at most that much (plus what turns during one write). Writes per second per turning
    # motor: step rate / (fraction x pulses per round), e.g. 3,200 / (0.05 x 3,200) = 20.
    checkpoint_fraction_of_round: float = Field(default=DEFAULT_CHECKPOINT_FRACTION, gt=0, le=1)
    # A motor comes to rest within this many rounds of its last written checkpoint (the local Redis
    # is down or stalled) and waits, so a crash repeats at most this much.
    max_unwritten_rounds: float = Field(default=DEFAULT_MAX_UNWRITTEN_ROUNDS, gt=0, le=100)
    # A STEP pulse later than this many full steps' time makes the ramp re-plan from the motor's real
    # speed; less is a phase error the rotor rides through. Either way nothing late is made up.
    late_replan_full_steps: float = Field(default=DEFAULT_LATE_REPLAN_FULL_STEPS, gt=0, le=4)
    # Per motor, how many last finished commandIds each heartbeat repeats (recentDone): a done
    # report lost upstream is repaired by the next heartbeat, while fewer commands than this
    # finished since.
    recent_done_in_heartbeat: int = Field(default=DEFAULT_RECENT_DONE, ge=1, le=RECENT_DONE_LIMIT)
    # With ThingsBoard unreachable this long, systemd is told we are up (the motors run offline).
    offline_ready_after_s: float = Field(default=15.0, ge=0)
    # With the local Redis unreachable no command can be accepted, run or reported: systemd's status
    # says so at once, and after this long the watchdog is no longer fed, so systemd restarts us
    # (keep it above WatchdogSec's quiet time for a Redis restart to pass without one).
    buffer_outage_restart_s: float = Field(default=60.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gateway_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    motors: Annotated[list[MotorSettings], Field(min_length=1)]

    @model_validator(mode="after")
    def _motors_do_not_share(self) -> Self:
        names: dict[str, int] = {}
        owners: dict[int, str] = {}
        ceiling = BACKENDS[self.gpio_backend].max_step_rate_sps
        for i, motor in enumerate(self.motors):
            if motor.max_step_rate_sps > ceiling:
                raise ValueError(
                    f"motors[{i}].max_step_rate_sps: {motor.max_step_rate_sps:g} is above the "
                    f"{ceiling:g} steps/s gpio_backend {self.gpio_backend.value} can produce"
                )
            if motor.name in names:
                raise ValueError(f"motors[{i}].name: {motor.name!r} is already motors[{names[motor.name]}]")
            names[motor.name] = i
            for pin_name, pin in motor.pins.named():
                where = f"motors[{i}].pins.{pin_name}"
                if pin in owners:
                    raise ValueError(f"{where}: pin {pin} is already used by {owners[pin]}")
                owners[pin] = where
        if self.estop is not None and self.estop.pin in owners:
            raise ValueError(f"estop.pin: pin {self.estop.pin} is already used by {owners[self.estop.pin]}")
        return self

    @property
    def checkpoint_policy(self) -> CheckpointPolicy:
        return CheckpointPolicy(self.checkpoint_fraction_of_round, self.max_unwritten_rounds)

    @model_validator(mode="after")
    def _motors_stop_within_the_unwritten_bound(self) -> Self:
        # A motor decelerates early enough to rest within max_unwritten_rounds of its checkpoint.
        # Stopping from full speed may take half of that bound; the other half is the room the
        # checkpoint writer (and, with a pulse train, the queued pulses) may lag at full speed.
        # Past it the motor would brake on every checkpoint and never reach its rate.
        policy = self.checkpoint_policy
        for i, motor in enumerate(self.motors):
            stop = steps_to_stop(motor.max_step_rate_sps, motor.acceleration_sps2)
            room = policy.max_unwritten_pulses(motor.pulses_per_round)
            if stop > room / 2:
                raise ValueError(
                    f"motors[{i}].acceleration_sps2: stopping from {motor.max_step_rate_sps:g} steps/s "
                    f"takes {stop} pulses, more than half of the {room} pulses max_unwritten_rounds "
                    f"lets a motor run past its checkpoint; raise acceleration_sps2 or max_unwritten_rounds"
                )
        return self


_FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w\[\]./]*: ")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_settings(data: Any, source: str = "config") -> EdgeSettings:
    try:
        return EdgeSettings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _location(tuple(err["loc"]))
            message = str(err["msg"]).removeprefix("Value error, ")
            if _FIELD_PREFIX.match(message):  # a model check that names its own sub-field
                problems.append(message if where == "(top level)" else f"{where}.{message}")
            else:
                problems.append(f"{where}: {message}")
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(problems)) from None


class DuplicateKey(yaml.YAMLError):
    """The same key twice in one mapping: PyYAML keeps the last silently, we refuse the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a << merge may be overridden by the mapping's own keys, as YAML allows
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error names it
            line = key_node.start_mark.line + 1
            if seen is not None:
                raise DuplicateKey(f"line {line}: duplicate key {key!r} (first on line {seen})")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_settings(path: Path) -> EdgeSettings:
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_settings(data, str(path))
