"""The fleet file: the cloud workers' dispatcher devices, the gateways (Pis) and the motors each drives.

dispatchers:                    # one per cloud worker instance: dispatcher-1 .. dispatcher-2
  prefix: dispatcher
  count: 2
gateways:
  pi-01: [motor_01, motor_02]   # gateway device name (= Ansible host) -> its motors
  pi-02: [motor_03]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

DeviceName = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)]


class FleetError(ValueError):
    pass


class Dispatchers(BaseModel):
    """The devices the cloud workers connect as: ThingsBoard keeps one session per device, so every
    worker instance needs its own (``<prefix>-1`` .. ``<prefix>-<count>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: DeviceName = "dispatcher"
    count: int = Field(default=2, ge=1, le=1_000)

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}-{n}" for n in range(1, self.count + 1)]


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dispatchers: Dispatchers = Dispatchers()
    gateways: Annotated[dict[DeviceName, list[DeviceName]], Field(min_length=1)]

    @model_validator(mode="after")
    def _names_are_unique(self) -> Self:
        owner: dict[str, str] = {name: "a dispatcher" for name in self.dispatchers.names}
        for gateway, motors in self.gateways.items():
            for name, role in [(gateway, "a gateway"), *((m, f"a motor of {gateway}") for m in motors)]:
                if name in owner:
                    raise ValueError(f"device name {name!r} is both {owner[name]} and {role}")
                owner[name] = role
        return self

    @property
    def motors(self) -> list[str]:
        return [m for motors in self.gateways.values() for m in motors]


def load_fleet(path: Path, *, dispatchers: int | None = None) -> Fleet:
    """The fleet file, validated; ``dispatchers`` overrides its dispatcher count."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FleetError(f"cannot read fleet file {path}: {exc}") from exc
    if dispatchers is not None and isinstance(data, dict):
        data = {**data, "dispatchers": {**(data.get("dispatchers") or {}), "count": dispatchers}}
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'fleet'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise FleetError(f"fleet file {path} is invalid: {problems}") from None
