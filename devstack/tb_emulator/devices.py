"""Devices, their credentials, attributes and latest telemetry; the devices file that seeds them.

Devices file (YAML)::

    profiles:                     # device profiles (optional): where their devices' messages go
      - name: motor
        rule_chain: giftwheel     # a loaded chain's ruleChain.name; omitted: the root chain
        queue: HighPriority       # rule-engine queue (defaultQueueName); omitted: Main
    devices:
      - name: dispatcher          # ThingsBoard device name (unique)
        token: dispatcher-token   # access token = MQTT username; omit for gateway sub-devices
        type: dispatcher          # device profile name (ThingsBoard: type == profile name)
      - name: pi-01
        token: pi-01-token
        type: gateway
        gateway: true             # "Is gateway" in ThingsBoard: may use v1/gateway/*
        overwrite_activity_time: true   # gateway activity keeps its sub-devices active
      - name: motor_01
        type: motor
        shared_attributes: {maxRpm: 120}

Devices a gateway announces that are not in the file are created on first sight, as ThingsBoard does,
and so is a profile named after a type nobody declared: with no default rule chain (its messages go to
the root chain) and no default queue (Main).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from devstack.tb_emulator.convert import is_blank, java_length
from devstack.tb_emulator.rpc import DeviceRpc

# Device ids are derived from names so a restarted emulator gives the same ids.
_ID_NAMESPACE = uuid.UUID("6d1c5a1e-7f6b-4a0e-9a55-1c0ffee00001")
DEFAULT_DEVICE_TYPE = "default"


class DeviceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    token: str | None = Field(default=None, min_length=1, max_length=128)
    type: str = Field(default=DEFAULT_DEVICE_TYPE, min_length=1, max_length=255)
    gateway: bool = False
    # ThingsBoard's "Overwrite activity time for connected device": the gateway's own activity
    # (PINGREQ included) keeps its sub-devices' sessions alive.
    overwrite_activity_time: bool = False
    shared_attributes: dict[str, Any] = Field(default_factory=dict)
    server_attributes: dict[str, Any] = Field(default_factory=dict)


class ProfileSpec(BaseModel):
    """A device profile's routing: ThingsBoard's DeviceProfile defaultRuleChainId and defaultQueueName."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    # ruleChain.name of a loaded chain; None: ThingsBoard's null defaultRuleChainId (the root chain)
    rule_chain: str | None = Field(default=None, min_length=1)
    # None: ThingsBoard's null defaultQueueName (the Main queue)
    queue: str | None = Field(default=None, min_length=1)


class DevicesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profiles: list[ProfileSpec] = Field(default_factory=list)
    devices: list[DeviceSpec]


class DataValidationError(ValueError):
    """ThingsBoard's DataValidationException: an entity its DAO validators refuse to save."""


# @Length's default maximum on Device.name, Device.type and DeviceProfile.name, in UTF-16 units
_MAX_NAME_LENGTH = 255


def _validate_name(what: str, name: str) -> None:
    """ConstraintValidator.validateFields (@Length: at most 255 UTF-16 units), then
    DataValidator.validateString (blank, or containing 0x00), with their messages
    (thingsboard/thingsboard dao/src/main/java/org/thingsboard/server/dao/service/
    ConstraintValidator.java, DataValidator.java @dfe65d5). Not emulated: @NoXss (OWASP AntiSamy's
    HTML policy)."""
    if java_length(name) > _MAX_NAME_LENGTH:
        raise DataValidationError(
            f"Validation error: name length must be equal or less than {_MAX_NAME_LENGTH}"
        )
    if is_blank(name):
        raise DataValidationError(f"{what} should be specified!")
    if "\x00" in name:
        raise DataValidationError(f"{what} should not contain 0x00 symbol!")


class DevicesFileError(ValueError):
    pass


def load_devices_file(path: Path) -> DevicesFile:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DevicesFileError(f"cannot read devices file {path}: {exc}") from exc
    try:
        fleet = DevicesFile.model_validate(raw)
    except ValueError as exc:
        raise DevicesFileError(f"invalid devices file {path}: {exc}") from exc
    check_unique(fleet)
    return fleet


def check_unique(fleet: DevicesFile) -> None:
    names = [s.name for s in fleet.devices]
    tokens = [s.token for s in fleet.devices if s.token]
    profiles = [p.name for p in fleet.profiles]
    for label, values in (("device name", names), ("access token", tokens), ("profile name", profiles)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise DevicesFileError(f"duplicate {label}(s): {', '.join(dupes)}")


@dataclass(slots=True)
class DeviceProfile:
    name: str
    id: str
    rule_chain: str | None  # None: the root chain
    queue: str | None  # None: Main
    # created on first sight of a device of this type (DeviceProfileServiceImpl.findOrCreateDeviceProfile)
    auto_created: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "defaultRuleChain": self.rule_chain,
            "defaultQueueName": self.queue,
            "autoCreated": self.auto_created,
        }


@dataclass(slots=True)
class Device:
    name: str
    type: str  # the device profile's name: ThingsBoard keeps the two equal
    token: str | None
    is_gateway: bool
    id: str
    rpc: DeviceRpc
    client_attributes: dict[str, Any] = field(default_factory=dict)
    shared_attributes: dict[str, Any] = field(default_factory=dict)
    server_attributes: dict[str, Any] = field(default_factory=dict)
    # (scope, key) -> when the attribute was last saved, ms (ThingsBoard's lastUpdateTs)
    attribute_ts: dict[tuple[str, str], int] = field(default_factory=dict)
    # key -> (ts ms, value); what ThingsBoard's "latest telemetry" shows
    latest: dict[str, tuple[int, Any]] = field(default_factory=dict)
    # saved telemetry groups, newest last; the registry sets the bound (HubSettings.history_per_device)
    history: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    created_by_gateway: str | None = None
    last_connected_gateway: str | None = None
    last_activity_ms: int = 0
    overwrite_activity_time: bool = False

    def attributes(self, scope: str) -> dict[str, Any]:
        """The attribute store of a scope: CLIENT_SCOPE, SHARED_SCOPE or SERVER_SCOPE (KeyError otherwise)."""
        return {
            "CLIENT_SCOPE": self.client_attributes,
            "SHARED_SCOPE": self.shared_attributes,
            "SERVER_SCOPE": self.server_attributes,
        }[scope]

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "gateway": self.is_gateway,
            "createdByGateway": self.created_by_gateway,
            "lastConnectedGateway": self.last_connected_gateway,
            "lastActivityTime": self.last_activity_ms,
            "rpcSessions": self.rpc.session_count,
        }


def device_id_for(name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, name))


def profile_id_for(name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"profile:{name}"))


class DeviceRegistry:
    """All devices by name, token and id, and their profiles; ``rpc_factory`` gives each its RPC actor."""

    def __init__(
        self,
        rpc_factory: Callable[[str], DeviceRpc],
        history_per_device: int = 10_000,
        profiles: list[ProfileSpec] | None = None,
    ) -> None:
        self._rpc_factory = rpc_factory
        self._history = history_per_device
        self.by_name: dict[str, Device] = {}
        self.by_token: dict[str, Device] = {}
        self.by_id: dict[str, Device] = {}
        self.profiles: dict[str, DeviceProfile] = {
            p.name: DeviceProfile(p.name, profile_id_for(p.name), p.rule_chain, p.queue)
            for p in profiles or ()
        }

    def profile_of(self, device: Device) -> DeviceProfile:
        """The device's profile; a type nobody declared gets ThingsBoard's new default profile:
        no default rule chain, no default queue (DeviceProfileServiceImpl.doCreateDeviceProfile,
        thingsboard/thingsboard dao/.../device/DeviceProfileServiceImpl.java @dfe65d5)."""
        profile = self.profiles.get(device.type)
        if profile is None:
            profile = DeviceProfile(device.type, profile_id_for(device.type), None, None, auto_created=True)
            self.profiles[device.type] = profile
        return profile

    def add(self, spec: DeviceSpec) -> Device:
        if spec.name in self.by_name:
            raise DevicesFileError(f"device {spec.name!r} already exists")
        if spec.token and spec.token in self.by_token:
            raise DevicesFileError(f"access token of {spec.name!r} is already used")
        device = self._new(spec.name, spec.type, spec.token, spec.gateway)
        self.profile_of(device)
        device.overwrite_activity_time = spec.overwrite_activity_time
        device.shared_attributes.update(spec.shared_attributes)
        device.server_attributes.update(spec.server_attributes)
        now_ms = int(time.time() * 1000)
        for scope, values in (
            ("SHARED_SCOPE", spec.shared_attributes),
            ("SERVER_SCOPE", spec.server_attributes),
        ):
            device.attribute_ts.update(((scope, key), now_ms) for key in values)
        return device

    def _new(self, name: str, type_: str, token: str | None, gateway: bool) -> Device:
        device_id = device_id_for(name)
        rpc = self._rpc_factory(name)
        device = Device(name=name, type=type_, token=token, is_gateway=gateway, id=device_id, rpc=rpc)
        device.history = deque(maxlen=self._history)
        self.by_name[name] = device
        self.by_id[device_id] = device
        if token:
            self.by_token[token] = device
        return device

    def find_or_create_sub_device(self, name: str, type_: str, gateway: Device) -> tuple[Device, bool]:
        """ThingsBoard's findOrCreateDevice for a gateway's sub-device: an existing device of that name
        is reused as it is (its type and profile unchanged, whatever the gateway announced); otherwise a
        device is created with the announced type, on the profile of that name, made if none exists
        (DefaultTransportApiService.findOrCreateDevice / createNewDevice, thingsboard/thingsboard
        application/.../service/transport/DefaultTransportApiService.java @dfe65d5). Returns the
        device and whether it was created. A new device or profile that ThingsBoard's validators
        refuse is a :class:`DataValidationError` and nothing is created."""
        device = self.by_name.get(name)
        created = device is None
        if device is None:
            if type_ not in self.profiles:  # findOrCreateDeviceProfile saves the profile first
                _validate_name("Device profile name", type_)
            _validate_name("Device name", name)
            device = self._new(name, type_, None, False)
            device.created_by_gateway = gateway.name
            self.profile_of(device)
        device.last_connected_gateway = gateway.name
        return device, created

    def lookup(self, name_or_id: str) -> Device | None:
        return self.by_name.get(name_or_id) or self.by_id.get(name_or_id)
