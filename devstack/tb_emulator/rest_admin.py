"""ThingsBoard's administration REST API, the subset `giftwheel tb provision` uses: tenant login, device
profiles, devices with access-token credentials, rule chains and their metadata; and the system
administrator's login (its queue endpoints: rest_queues.py).

Shapes follow ThingsBoard's controllers (AuthController, DeviceController, DeviceProfileController,
RuleChainController): entity ids as ``{"entityType", "id"}``, ``PageData`` pages, errors as
``{"status", "message", "errorCode"}`` (ThingsBoardErrorCode: 10 authentication, 31 bad request
parameters, 32 item not found, 20 permission denied). Each endpoint admits the authorities its
controller's @PreAuthorize names (tenant endpoints: TENANT_ADMIN); anyone else logged in gets 403
"You don't have permission to perform this operation!" (ThingsboardErrorResponseHandler's
AccessDeniedException handler). Devices created here are real emulator devices: their access token
works on the MQTT side at once. Admin state other than devices lives per hub in ``_STATE``; rule
chains in a RuleChainStore (rule_chain_store.py), which saves them as the hub's ThingsBoard version
does.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import orjson

from devstack.tb_emulator.devices import Device, DeviceProfile, DeviceSpec, profile_id_for
from devstack.tb_emulator.rest import Request, Result, Routes
from devstack.tb_emulator.rule_chain_store import AdminError, RuleChainStore

if TYPE_CHECKING:
    from devstack.tb_emulator.hub import Hub

# The users a fresh ThingsBoard has (thingsboard/thingsboard application/src/main/java/org/thingsboard/
# server/service/install/DefaultSystemDataLoaderService.java @dfe65d5: createSysAdmin, and the demo
# tenant's administrator from loadDemoData); the emulator knows no other user.
SYSADMIN_USER = "sysadmin@thingsboard.org"
SYSADMIN_PASSWORD = "sysadmin"  # noqa: S105 (ThingsBoard's published install default)
TENANT_USER = "tenant@thingsboard.org"
TENANT_PASSWORD = "tenant"  # noqa: S105 (ThingsBoard's published demo credential)
# Authority (common/data/.../security/Authority.java)
SYS_ADMIN = "SYS_ADMIN"
TENANT_ADMIN = "TENANT_ADMIN"
_USERS = {SYSADMIN_USER: (SYSADMIN_PASSWORD, SYS_ADMIN), TENANT_USER: (TENANT_PASSWORD, TENANT_ADMIN)}
# TenantId.SYS_TENANT_ID (EntityId.NULL_UUID): the system administrator's tenant, which owns the queues
SYS_TENANT_ID = "13814000-1dd2-11b2-8080-808080808080"
TENANT_ID = "7b0c4e1e-1dd2-11b2-9a55-1c0ffee00001"  # the demo tenant's (random in ThingsBoard)
NULL_CUSTOMER_ID = SYS_TENANT_ID  # CustomerId of an entity assigned to no customer: NULL_UUID
_NAMESPACE = uuid.UUID("6d1c5a1e-7f6b-4a0e-9a55-1c0ffee00002")
# ThingsboardErrorCode
_AUTHENTICATION, _PERMISSION_DENIED = 10, 20
PERMISSION_DENIED = "You don't have permission to perform this operation!"
_TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class AdminState:
    rule_chains: RuleChainStore
    sessions: dict[str, str] = field(default_factory=dict)  # token -> the user's authority
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> DeviceProfile
    device_extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # device id -> label, info
    created_ms: dict[str, int] = field(default_factory=dict)


_STATE: WeakKeyDictionary[Hub, AdminState] = WeakKeyDictionary()


def _state(hub: Hub) -> AdminState:
    if hub not in _STATE:
        _STATE[hub] = AdminState(RuleChainStore(hub.settings.thingsboard_version, TENANT_ID))
    return _STATE[hub]


def _error(status: int, message: str, code: int) -> Result:
    return status, {
        "status": status,
        "message": message,
        "errorCode": code,
        "timestamp": int(time.time() * 1000),
    }


def _entity(kind: str, entity_id: str) -> dict[str, str]:
    return {"entityType": kind, "id": entity_id}


def _new_id() -> str:
    return str(uuid.uuid4())


def _json(req: Request) -> Any:
    try:
        return orjson.loads(req.body or b"null")
    except orjson.JSONDecodeError:
        return None


def authority(hub: Hub, req: Request) -> str | None:
    """The logged-in user's authority (SYS_ADMIN, TENANT_ADMIN), None without a valid login."""
    header = req.headers.get("x-authorization", "")
    return _state(hub).sessions.get(header[7:]) if header.startswith("Bearer ") else None


def authorized(hub: Hub, req: Request) -> bool:
    return authority(hub, req) is not None


def refused(hub: Hub, req: Request, *allowed: str) -> Result | None:
    """Spring Security's answer unless a user with one of ``allowed`` (@PreAuthorize) is logged in:
    401 without a login, 403 for another authority."""
    user = authority(hub, req)
    if user is None:
        return _error(401, "Authentication failed", _AUTHENTICATION)
    if user not in allowed:
        return _error(403, PERMISSION_DENIED, _PERMISSION_DENIED)
    return None


# ThingsBoard's other REST controllers (rest_plugins.py, rest_queues.py) share the login, the error
# shape and the pages
error_response = _error


def paged(items: list[dict[str, Any]], req: Request) -> Result:
    try:
        size = int(req.query.get("pageSize", ["10"])[0])
        page = int(req.query.get("page", ["0"])[0])
    except ValueError:
        return _error(400, "pageSize and page must be integers", 31)
    if size < 1 or page < 0:
        return _error(400, "pageSize must be positive and page not negative", 31)
    search = req.query.get("textSearch", [""])[0].lower()
    matching = sorted((i for i in items if i["name"].lower().startswith(search)), key=lambda i: i["name"])
    chunk = matching[page * size : (page + 1) * size]
    total_pages = -(-len(matching) // size)
    return 200, {
        "data": chunk,
        "totalPages": total_pages,
        "totalElements": len(matching),
        "hasNext": page + 1 < total_pages,
    }


def _profile_for_type(hub: Hub, type_name: str) -> dict[str, Any]:
    """ThingsBoard creates a profile the first time a device names an unknown type."""
    state = _state(hub)
    for profile in state.profiles.values():
        if profile["name"] == type_name:
            return profile
    profile_id = str(uuid.uuid5(_NAMESPACE, f"profile:{type_name}"))
    profile = {
        "id": _entity("DEVICE_PROFILE", profile_id),
        "createdTime": hub.now_ms(),
        "tenantId": _entity("TENANT", TENANT_ID),
        "name": type_name,
        "description": None,
        "type": "DEFAULT",
        "transportType": "DEFAULT",
        "provisionType": "DISABLED",
        "profileData": {
            "configuration": {"type": "DEFAULT"},
            "transportConfiguration": {"type": "DEFAULT"},
            "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None},
            "alarms": None,
        },
        "defaultRuleChainId": None,
        "defaultQueueName": None,
        "default": type_name == "default",
    }
    state.profiles[profile_id] = profile
    return profile


def _device_json(hub: Hub, device: Device) -> dict[str, Any]:
    state = _state(hub)
    extra = state.device_extra.setdefault(device.id, {"label": None, "additionalInfo": {}})
    info = {**extra["additionalInfo"], "gateway": device.is_gateway}
    if device.is_gateway:
        info["overwriteActivityTime"] = device.overwrite_activity_time
    return {
        "id": _entity("DEVICE", device.id),
        "createdTime": state.created_ms.setdefault(device.id, hub.now_ms()),
        "tenantId": _entity("TENANT", TENANT_ID),
        "customerId": _entity("CUSTOMER", NULL_CUSTOMER_ID),
        "name": device.name,
        "type": device.type,
        "label": extra["label"],
        "deviceProfileId": _profile_for_type(hub, device.type)["id"],
        "additionalInfo": info,
    }


async def login(hub: Hub, req: Request) -> Result:
    body = _json(req)
    if not isinstance(body, dict) or "username" not in body or "password" not in body:
        return _error(401, "Authentication failed", 10)
    user = _USERS.get(body["username"])
    if user is None or body["password"] != user[0]:
        return _error(401, "Invalid username or password", 10)
    token = secrets.token_urlsafe(32)
    _state(hub).sessions[token] = user[1]
    return 200, {"token": token, "refreshToken": secrets.token_urlsafe(32)}


async def tenant_device(hub: Hub, req: Request) -> Result:
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    name = req.query.get("deviceName", [""])[0]
    device = hub.registry.by_name.get(name)
    if device is None:
        return _error(404, "Requested item wasn't found!", 32)
    return 200, _device_json(hub, device)


async def save_device(hub: Hub, req: Request) -> Result:
    """Create (no id) or update (id) a device; a new device gets a random access token."""
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    body = _json(req)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        return _error(400, "Device name should be specified!", 31)
    state = _state(hub)
    profile_ref = body.get("deviceProfileId") or {}
    profile = state.profiles.get(profile_ref.get("id", "")) if profile_ref else None
    if profile_ref and profile is None:
        return _error(400, "Device profile is referencing to non-existent device profile!", 31)
    type_name = profile["name"] if profile else body.get("type") or "default"
    info = body.get("additionalInfo") or {}
    existing_id = (body.get("id") or {}).get("id")
    if existing_id:
        device = hub.registry.by_id.get(existing_id)
        if device is None:
            return _error(404, "Requested item wasn't found!", 32)
        if device.name != body["name"]:
            return _error(400, "renaming devices is not supported by the emulator", 31)
        device.type = type_name
    else:
        if body["name"] in hub.registry.by_name:
            return _error(400, "Device with such name already exists!", 31)
        token = req.query.get("accessToken", [None])[0] or "".join(
            secrets.choice(_TOKEN_ALPHABET) for _ in range(20)
        )
        if token in hub.registry.by_token:
            return _error(400, "Specified credentials are already registered!", 31)
        device = hub.registry.add(DeviceSpec(name=body["name"], token=token, type=type_name))
        _profile_for_type(hub, type_name)
    device.is_gateway = bool(info.get("gateway", False))
    device.overwrite_activity_time = bool(info.get("overwriteActivityTime", False))
    state.device_extra[device.id] = {
        "label": body.get("label"),
        "additionalInfo": {k: v for k, v in info.items() if k not in ("gateway", "overwriteActivityTime")},
    }
    return 200, _device_json(hub, device)


async def device_credentials(hub: Hub, req: Request) -> Result:
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    device = hub.registry.by_id.get(req.params["id"])
    if device is None:
        return _error(404, "Requested item wasn't found!", 32)
    return 200, {
        "id": {"id": str(uuid.uuid5(_NAMESPACE, f"credentials:{device.id}"))},
        "createdTime": _state(hub).created_ms.setdefault(device.id, hub.now_ms()),
        "deviceId": _entity("DEVICE", device.id),
        "credentialsType": "ACCESS_TOKEN",
        "credentialsId": device.token,
        "credentialsValue": None,
    }


async def device_profiles(hub: Hub, req: Request) -> Result:
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    for device in list(hub.registry.by_name.values()):
        _profile_for_type(hub, device.type)
    return paged(list(_state(hub).profiles.values()), req)


async def save_device_profile(hub: Hub, req: Request) -> Result:
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    body = _json(req)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        return _error(400, "Device profile name should be specified!", 31)
    state = _state(hub)
    chain_ref = body.get("defaultRuleChainId")
    if chain_ref and not state.rule_chains.exists(chain_ref.get("id")):
        return _error(400, "Device profile is referencing to non-existent rule chain!", 31)
    # DeviceProfileDataValidator (thingsboard/thingsboard dao/.../service/validator/
    # DeviceProfileDataValidator.java @dfe65d5): the queue must exist; a sysadmin creates it
    queue_name = body.get("defaultQueueName")
    if queue_name and queue_name not in hub.queues.by_name:
        return _error(400, "Device profile is referencing to non-existent queue!", 31)
    profile_id = (body.get("id") or {}).get("id")
    same_name = [p for p in state.profiles.values() if p["name"] == body["name"]]
    if profile_id is None:
        if same_name:
            return _error(400, "Device profile with such name already exists!", 31)
        profile_id = _new_id()
        created = hub.now_ms()
    elif profile_id not in state.profiles:
        return _error(404, "Requested item wasn't found!", 32)
    else:
        created = state.profiles[profile_id]["createdTime"]
    profile = copy.deepcopy(body)
    profile.update(
        id=_entity("DEVICE_PROFILE", profile_id), createdTime=created, tenantId=_entity("TENANT", TENANT_ID)
    )
    state.profiles[profile_id] = profile
    _route_profile(hub, body["name"], queue_name or None)
    return 200, profile


def _route_profile(hub: Hub, name: str, queue: str | None) -> None:
    """A saved profile's defaultQueueName routes its devices' next messages (the transport and
    DefaultTbClusterService read the queue from the device's profile for each message, and a profile
    update reaches them at once: thingsboard/thingsboard application/.../service/queue/
    DefaultTbClusterService.java @dfe65d5). Its defaultRuleChainId does not: the rule engine runs the
    chains it was started with (rule_chain_store.py)."""
    routing = hub.registry.profiles.get(name)
    if routing is None:
        hub.registry.profiles[name] = DeviceProfile(name, profile_id_for(name), None, queue)
    else:
        routing.queue = queue


async def rule_chains(hub: Hub, req: Request) -> Result:
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    kind = req.query.get("type", ["CORE"])[0]
    return paged([c for c in _state(hub).rule_chains.chains() if c["type"] == kind], req)


def _rule_chains(hub: Hub, req: Request, call: Callable[[RuleChainStore], dict[str, Any]]) -> Result:
    """A rule chain endpoint: TENANT_ADMIN only, the store's refusals as ThingsBoard's errors."""
    if (answer := refused(hub, req, TENANT_ADMIN)) is not None:
        return answer
    try:
        return 200, call(_state(hub).rule_chains)
    except AdminError as exc:
        return _error(exc.status, exc.message, exc.code)


def _body(req: Request) -> dict[str, Any]:
    body = _json(req)
    if not isinstance(body, dict):
        raise AdminError(400, "Invalid request body", 31)
    return body


async def rule_chain(hub: Hub, req: Request) -> Result:
    return _rule_chains(hub, req, lambda store: store.chain(req.params["id"]))


async def save_rule_chain(hub: Hub, req: Request) -> Result:
    return _rule_chains(hub, req, lambda store: store.save_chain(_body(req), hub.now_ms()))


async def rule_chain_metadata(hub: Hub, req: Request) -> Result:
    return _rule_chains(hub, req, lambda store: store.metadata(req.params["id"]))


async def save_rule_chain_metadata(hub: Hub, req: Request) -> Result:
    """Saves a chain's nodes and connections as the rule chain editor's Save does (rule_chain_store.py)."""
    return _rule_chains(hub, req, lambda store: store.save_metadata(_body(req), hub.now_ms()))


ADMIN_ROUTES: Routes = [
    ("POST", "/api/auth/login", login),
    ("GET", "/api/tenant/devices", tenant_device),
    ("POST", "/api/device", save_device),
    ("GET", "/api/device/{id}/credentials", device_credentials),
    ("GET", "/api/deviceProfiles", device_profiles),
    ("POST", "/api/deviceProfile", save_device_profile),
    ("GET", "/api/ruleChains", rule_chains),
    ("POST", "/api/ruleChain", save_rule_chain),
    ("GET", "/api/ruleChain/{id}", rule_chain),
    ("GET", "/api/ruleChain/{id}/metadata", rule_chain_metadata),
    ("POST", "/api/ruleChain/metadata", save_rule_chain_metadata),
]
