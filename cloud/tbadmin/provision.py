"""Idempotent provisioning: the rule chain, the three device profiles pointing at it, one dispatcher
device per cloud worker, one gateway per Pi and the motors, then the access tokens the cloud workers
and Ansible need.

Each step reads what exists and writes only what differs, so a second run changes nothing, and a run
after someone edited ThingsBoard by hand puts back exactly what drifted. Existing devices keep their
access tokens (rotating them is a deliberate act in ThingsBoard, not a side effect of a re-run).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cloud.tbadmin.chain_sync import ensure_rule_chain as sync_rule_chain
from cloud.tbadmin.client import JsonObject, ThingsBoardAdmin, entity_id
from cloud.tbadmin.fleet import Fleet

Action = Literal["created", "updated", "unchanged"]
PROFILES = ("dispatcher", "gateway", "motor")
REST_NODE = "org.thingsboard.rule.engine.rest.TbRestApiCallNode"
SECRET_HEADER = "X-Giftwheel-Secret"  # noqa: S105 (a header name)
# Profile fields the shipped JSON decides; ThingsBoard owns the rest (ids, timestamps, defaults).
PROFILE_FIELDS = (
    "description",
    "type",
    "transportType",
    "provisionType",
    "defaultRuleChainId",
    "defaultQueueName",  # deploy/thingsboard/queues/: the queue must exist before the profile is saved
)


class ArtefactError(ValueError):
    pass


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    action: Action


@dataclass
class Provisioned:
    changes: list[Change] = field(default_factory=list)
    dispatcher_tokens: dict[str, str] = field(default_factory=dict)
    gateway_tokens: dict[str, str] = field(default_factory=dict)

    def note(self, kind: str, name: str, action: Action) -> None:
        self.changes.append(Change(kind, name, action))


@dataclass(frozen=True)
class Artefacts:
    """deploy/thingsboard: the rule chain export and the device profile JSONs."""

    chain: JsonObject
    profiles: dict[str, JsonObject]

    @classmethod
    def load(cls, directory: Path) -> Artefacts:
        try:
            chain = json.loads((directory / "giftwheel_rule_chain.json").read_text())
            profiles = {
                name: json.loads((directory / "device_profiles" / f"{name}.json").read_text())
                for name in PROFILES
            }
        except (OSError, ValueError) as exc:
            raise ArtefactError(f"cannot read the ThingsBoard artefacts in {directory}: {exc}") from exc
        if not isinstance(chain.get("ruleChain"), dict) or not isinstance(chain.get("metadata"), dict):
            raise ArtefactError(f"{directory}/giftwheel_rule_chain.json is not a rule chain export")
        return cls(chain, profiles)

    def chain_for(self, feedback_url: str, feedback_secret: str) -> JsonObject:
        """The chain with this deployment's feedback endpoint and secret in its REST API call node."""
        chain = copy.deepcopy(self.chain)
        nodes = chain["metadata"]["nodes"]
        names = [n.get("name") for n in nodes]
        if len(set(names)) != len(names):  # nodes are matched to ThingsBoard's by name (chain_sync)
            raise ArtefactError(f"the rule chain's node names must be unique: {names}")
        rest_nodes = [n for n in nodes if n.get("type") == REST_NODE]
        if len(rest_nodes) != 1:
            raise ArtefactError(f"expected one REST API call node in the rule chain, found {len(rest_nodes)}")
        config = rest_nodes[0]["configuration"]
        config["restEndpointUrlPattern"] = feedback_url
        config.setdefault("headers", {})[SECRET_HEADER] = feedback_secret
        return chain


def _ref(kind: str, entity: JsonObject) -> JsonObject:
    return {"entityType": kind, "id": entity_id(entity)}


def ensure_rule_chain(admin: ThingsBoardAdmin, desired: JsonObject, out: Provisioned) -> JsonObject:
    """The chain, recognised and updated as chain_sync describes."""
    chain, action = sync_rule_chain(admin, desired)
    out.note("rule chain", desired["ruleChain"]["name"], action)
    return chain


def ensure_profile(admin: ThingsBoardAdmin, desired: JsonObject, out: Provisioned) -> JsonObject:
    name = desired["name"]
    found = admin.device_profiles(name)
    if not found:
        profile = admin.save_device_profile(desired)
        out.note("device profile", name, "created")
        return profile
    current = found[0]
    if all(current.get(k) == desired.get(k) for k in PROFILE_FIELDS):
        out.note("device profile", name, "unchanged")
        return current
    profile = admin.save_device_profile({**current, **{k: desired.get(k) for k in PROFILE_FIELDS}})
    out.note("device profile", name, "updated")
    return profile


def ensure_device(
    admin: ThingsBoardAdmin, name: str, profile: JsonObject, *, gateway: bool, out: Provisioned
) -> JsonObject:
    wanted_info = {"gateway": gateway}
    if gateway:  # the gateway's activity keeps its motors' sub-device sessions alive
        wanted_info["overwriteActivityTime"] = True
    kind = f"{profile['name']} device"
    current = admin.find_device(name)
    if current is None:
        device = admin.save_device(
            {
                "name": name,
                "type": profile["name"],
                "deviceProfileId": _ref("DEVICE_PROFILE", profile),
                "additionalInfo": {**wanted_info, "description": "provisioned by giftwheel tb provision"},
            }
        )
        out.note(kind, name, "created")
        return device
    info = current.get("additionalInfo") or {}
    same_profile = (current.get("deviceProfileId") or {}).get("id") == entity_id(profile)
    if same_profile and all(bool(info.get(k)) == v for k, v in wanted_info.items()):
        out.note(kind, name, "unchanged")
        return current
    device = admin.save_device(
        {
            **current,
            "type": profile["name"],
            "deviceProfileId": _ref("DEVICE_PROFILE", profile),
            "additionalInfo": {**info, **wanted_info},
        }
    )
    out.note(kind, name, "updated")
    return device


def provision(
    admin: ThingsBoardAdmin, fleet: Fleet, artefacts: Artefacts, *, feedback_url: str, feedback_secret: str
) -> Provisioned:
    out = Provisioned()
    chain = ensure_rule_chain(admin, artefacts.chain_for(feedback_url, feedback_secret), out)
    # Messages enter the chain of their originator's profile: dispatcher RPCs, motor telemetry.
    profiles = {
        name: ensure_profile(
            admin, {**artefacts.profiles[name], "defaultRuleChainId": _ref("RULE_CHAIN", chain)}, out
        )
        for name in PROFILES
    }
    for name in fleet.dispatchers.names:  # one per worker instance: one session per device
        dispatcher = ensure_device(admin, name, profiles["dispatcher"], gateway=False, out=out)
        out.dispatcher_tokens[name] = admin.access_token(entity_id(dispatcher))
    for gateway_name, motors in fleet.gateways.items():
        gateway = ensure_device(admin, gateway_name, profiles["gateway"], gateway=True, out=out)
        out.gateway_tokens[gateway_name] = admin.access_token(entity_id(gateway))
        # Created up front: a sub-device first seen through a gateway gets the gateway's type.
        for motor in motors:
            ensure_device(admin, motor, profiles["motor"], gateway=False, out=out)
    return out
