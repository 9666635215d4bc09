"""Gift rules as data: which device a gift turns and by how many rounds, loaded from YAML.

First matching rule wins; a gift no rule matches goes to ``default_device``.
``rounds = diamond * quantity * multiplier`` (at least 1), then capped per command and per device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from giftwheel.contracts import GiftEvent
from giftwheel.contracts.motor import ROUNDS_CEILING, DeviceName


class RulesError(ValueError):
    """A rules file that cannot be used, with every reason, named by where it sits in the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Multiplier = Annotated[float, Field(gt=0, le=1_000_000)]
Rounds = Annotated[int, Field(ge=1, le=ROUNDS_CEILING)]


class Match(_Strict):
    """Every given criterion must hold; an empty match matches every gift."""

    gift_name: list[str] | None = None
    platform: list[str] | None = None
    diamond_min: int | None = Field(default=None, ge=1)
    diamond_max: int | None = Field(default=None, ge=1)

    @field_validator("gift_name", "platform", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("gift_name")
    @classmethod
    def _casefold(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [name.casefold() for name in value]

    @model_validator(mode="after")
    def _range(self) -> Match:
        low, high = self.diamond_min, self.diamond_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"diamond_min {self.diamond_min} is above diamond_max {self.diamond_max}")
        return self

    def matches(self, event: GiftEvent) -> bool:
        return (
            (self.gift_name is None or event.gift_name.casefold() in self.gift_name)
            and (self.platform is None or event.platform in self.platform)
            and (self.diamond_min is None or event.diamond >= self.diamond_min)
            and (self.diamond_max is None or event.diamond <= self.diamond_max)
        )


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=128)
    match: Match = Match()
    device: DeviceName
    multiplier: Multiplier | None = None


class DeviceLimits(_Strict):
    command_rounds_max: Rounds | None = None


class RulesFile(_Strict):
    version: int = Field(1, ge=1, le=1)
    default_device: DeviceName
    multiplier: Multiplier = 1.0
    # No single command asks for more rounds than this (the rest is recorded as capped).
    command_rounds_max: Rounds = ROUNDS_CEILING
    devices: dict[DeviceName, DeviceLimits] = {}
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [rule.name for rule in self.rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclass(frozen=True, slots=True)
class Route:
    device: str
    rounds: int
    rule: str


DEFAULT_RULE = "default"


class Rules:
    """A validated rules file, ready to route events."""

    def __init__(self, spec: RulesFile, source: str = "<memory>") -> None:
        self.spec = spec
        self.source = source

    def route(self, event: GiftEvent) -> Route:
        for rule in self.spec.rules:
            if rule.match.matches(event):
                return Route(rule.device, self._rounds(event, rule.multiplier), rule.name)
        return Route(self.spec.default_device, self._rounds(event, None), DEFAULT_RULE)

    def _rounds(self, event: GiftEvent, multiplier: float | None) -> int:
        factor = self.spec.multiplier if multiplier is None else multiplier
        return min(ROUNDS_CEILING, max(1, int(event.diamond * event.quantity * factor)))

    def devices(self) -> frozenset[str]:
        """Every device these rules can send a command to, or set limits for."""
        return frozenset({self.spec.default_device, *(r.device for r in self.spec.rules), *self.spec.devices})

    def command_cap(self, device: str) -> int:
        limits = self.spec.devices.get(device)
        device_cap = limits.command_rounds_max if limits and limits.command_rounds_max else ROUNDS_CEILING
        return min(self.spec.command_rounds_max, device_cap)


def parse_rules(data: Mapping[str, Any] | None, source: str = "<memory>") -> Rules:
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Rules(RulesFile.model_validate(data), source)
    except ValidationError as exc:
        reasons = []
        for item in exc.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"]) or "file"
            reasons.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
        raise RulesError(f"{source}: " + "; ".join(reasons)) from None


def load_rules(path: Path) -> Rules:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_rules_yaml(text, str(path))


def parse_rules_yaml(text: str, source: str) -> Rules:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    return parse_rules(data, source)
