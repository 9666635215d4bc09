"""ThingsBoard's documented REST paths for a device's RPC and telemetry, behind ThingsBoard's login.

- ``POST /api/plugins/rpc/{oneway|twoway}/{deviceId}``: RpcV1Controller / AbstractRpcController.
- ``/api/plugins/telemetry/...``: TelemetryController: timeseries keys, latest values and history
  (aggregation NONE), attribute keys and values per scope, saving attributes (SERVER_SCOPE,
  SHARED_SCOPE) and timeseries.

Sources: thingsboard/thingsboard application/src/main/java/org/thingsboard/server/controller/
``RpcV1Controller.java``, ``AbstractRpcController.java``, ``TelemetryController.java``,
``BaseController.java`` (errors), ``service/security/AccessValidator.java`` @dfe65d5 (4.4) and
v4.3.0.1 (4.3; the history query differs, below). Every path needs ``X-Authorization: Bearer
<token>`` from ``POST /api/auth/login`` (rest_admin.py), else 401. Ids are device UUIDs (the
emulator's ``/api/rpc`` and ``/api/devices`` paths take names too). Answers are ThingsBoard's: a
JSON error ``{"status","message","errorCode","timestamp"}`` where a controller throws, a plain-text
message where it answers ``ResponseEntity<String>`` (a device not found: 404 "Device with requested
id wasn't found!"), a bare status where it has no body (an RPC TIMEOUT: 408). The system administrator
passes these controllers' @PreAuthorize but AccessValidator.validateDevice refuses it any device: 403
"System administrator is not allowed to perform this operation!".

Not emulated: other entity types than DEVICE (they answer 404: the emulator has only devices),
aggregations other than NONE, deleting timeseries or attributes, the persistent-RPC listing paths,
ATTRIBUTES_UPDATED / TIMESERIES_UPDATED events into the rule engine, TTLs (accepted, not applied).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import orjson

from devstack.tb_emulator import convert, gson, jackson
from devstack.tb_emulator.rest import Handler, PlainResponse, Request, Result, Routes
from devstack.tb_emulator.rest_admin import SYS_ADMIN, authority, authorized, error_response
from devstack.tb_emulator.rpc import RpcError
from devstack.tb_emulator.server_rpc import server_rpc
from devstack.tb_emulator.versions import TbVersion

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device
    from devstack.tb_emulator.hub import Hub


# ThingsboardErrorCode
_AUTHENTICATION, _BAD_REQUEST_PARAMS, _ITEM_NOT_FOUND, _GENERAL = 10, 31, 32, 2
# server.rest.server_side_rpc in thingsboard.yml
RPC_MIN_TIMEOUT_MS = 5_000
RPC_DEFAULT_TIMEOUT_MS = 10_000
_DEVICE_NOT_FOUND = "Device with requested id wasn't found!"  # AccessValidator
SCOPES = ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE")  # AttributeScope, in enum order
_AGGREGATIONS = ("MIN", "MAX", "AVG", "SUM", "COUNT", "NONE")  # kv.Aggregation
_WRITABLE_SCOPES = ("SERVER_SCOPE", "SHARED_SCOPE")
# common/data/.../EntityType.java, the same in both versions
_ENTITY_TYPE_NAMES = (
    "TENANT CUSTOMER USER DASHBOARD ASSET DEVICE ALARM RULE_CHAIN RULE_NODE ENTITY_VIEW WIDGETS_BUNDLE "
    "WIDGET_TYPE TENANT_PROFILE DEVICE_PROFILE ASSET_PROFILE API_USAGE_STATE TB_RESOURCE OTA_PACKAGE "
    "EDGE RPC QUEUE NOTIFICATION_TARGET NOTIFICATION_TEMPLATE NOTIFICATION_REQUEST NOTIFICATION "
    "NOTIFICATION_RULE QUEUE_STATS DOMAIN MOBILE_APP MOBILE_APP_BUNDLE CALCULATED_FIELD JOB "
    "ADMIN_SETTINGS AI_MODEL API_KEY"
)
ENTITY_TYPES = frozenset(_ENTITY_TYPE_NAMES.split())
# java.util.UUID.fromString: five '-'-separated hex groups, each within its field's width
_JAVA_UUID = re.compile(
    r"^([0-9a-fA-F]{1,8})-([0-9a-fA-F]{1,4})-([0-9a-fA-F]{1,4})-([0-9a-fA-F]{1,4})-([0-9a-fA-F]{1,12})$"
)


class _ControllerError(Exception):
    """What BaseController.handleControllerException answers: a ThingsBoard JSON error."""

    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.result = error_response(status, message, code)


def _bad_request(message: str) -> _ControllerError:
    return _ControllerError(400, message, _BAD_REQUEST_PARAMS)


class _EntityNotFound(Exception):
    """AccessValidator's EntityNotFoundException: ResponseEntity<String>(message, 404)."""


class _AccessDenied(Exception):
    """AccessValidator's AccessDeniedException: ResponseEntity<String>(message, 403)."""


def _java_uuid(text: str) -> str:
    """UUID.fromString (five '-'-separated hex groups, each within its field's width); an
    IllegalArgumentException is a 400 (BaseController)."""
    if len(text) > 36:
        raise _bad_request("UUID string too large")
    match = _JAVA_UUID.match(text)
    if match is None:
        raise _bad_request(f"Invalid UUID string: {text}")
    widths = (8, 4, 4, 4, 12)
    return "-".join(group.lower().zfill(width) for group, width in zip(match.groups(), widths, strict=True))


def _entity_id(entity_type: str, entity_id: str) -> str:
    """EntityIdFactory.getByTypeAndId: EntityType.valueOf, then UUID.fromString."""
    if entity_type not in ENTITY_TYPES:
        raise _bad_request(f"No enum constant org.thingsboard.server.common.data.EntityType.{entity_type}")
    return _java_uuid(entity_id)


def _device(hub: Hub, req: Request, entity_type: str, uuid: str) -> Device:
    """AccessValidator.validate: the device, or 404; the system administrator may not touch a device
    (validateDevice: 403)."""
    if entity_type == "DEVICE" and authority(hub, req) == SYS_ADMIN:
        raise _AccessDenied("System administrator is not allowed to perform this operation!")
    device = hub.registry.by_id.get(uuid) if entity_type == "DEVICE" else None
    if device is None:
        raise _EntityNotFound(_DEVICE_NOT_FOUND if entity_type == "DEVICE" else f"{entity_type} not found")
    return device


def _controller(handler: Handler) -> Handler:
    """The login check (Spring Security's filter runs first), then the controller's own errors."""

    async def run(hub: Hub, req: Request) -> Result:
        if not authorized(hub, req):
            return error_response(401, "Authentication failed", _AUTHENTICATION)
        try:
            return await handler(hub, req)
        except _ControllerError as exc:
            return exc.result
        except _EntityNotFound as exc:
            return 404, PlainResponse(str(exc))
        except _AccessDenied as exc:
            return 403, PlainResponse(str(exc))

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


# ----------------------------------------------------------------------------- RPC (RpcV1Controller)


def _jackson_body(body: bytes) -> dict[str, Any]:
    """JacksonUtil.toJsonNode of @RequestBody String: no body is Spring's 400; bad JSON is an
    IllegalArgumentException, "Invalid request body" (400); ``get("method")`` on anything but an
    object with a method is a NullPointerException: 500."""
    if not body:
        raise _bad_request("Required request body is missing")
    try:
        node = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad_request("Invalid request body") from None
    if not isinstance(node, dict) or "method" not in node:
        raise _ControllerError(
            500, 'Cannot invoke "JsonNode.asText()" because the return value is null', _GENERAL
        )
    return node


def _as_text(node: Any) -> str:
    """JsonNode.asText: a container is "", null is "null", a number its text."""
    if isinstance(node, (dict, list)):
        return ""
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, float):
        return jackson.java_double_to_string(node)
    return str(node)


def _as_long(node: Any, bits: int = 64) -> int:
    """JsonNode.asLong / asInt: a number cast as Java casts, numeric text parsed, a boolean 1 or 0,
    anything else 0."""
    if isinstance(node, bool):
        return int(node)
    if isinstance(node, str):
        return _parse_as_long(node.strip(), bits)
    if isinstance(node, float):
        return _java_cast(node, bits)
    if isinstance(node, int):
        half: int = 2 ** (bits - 1)
        return (node + half) % (2 * half) - half  # a BigIntegerNode's low bits
    return 0


def _parse_as_long(text: str, bits: int) -> int:
    """NumberInput.parseAsLong / parseAsInt with default 0."""
    try:
        return gson.parse_long(text, bits)
    except gson.NumberFormatException:
        pass
    try:
        return _java_cast(float(text), bits)
    except ValueError:
        return 0


def _java_cast(value: float, bits: int) -> int:
    """(long) / (int) of a double: NaN is 0, the fraction truncated, saturated at the bounds."""
    if math.isnan(value):
        return 0
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return low if value <= low else high if value >= high else int(value)


def _as_boolean(node: Any) -> bool:
    """JsonNode.asBoolean: a boolean, a non-zero number, the text "true"."""
    if isinstance(node, str):
        return node.strip() == "true"
    return bool(node) if isinstance(node, (bool, int, float)) else False


async def rpc_v1_call(hub: Hub, req: Request) -> Result:
    """AbstractRpcController.handleDeviceRPCRequest with RpcV1Controller's statuses: TIMEOUT 408
    (REQUEST_TIMEOUT), NO_ACTIVE_CONNECTION 409 (CONFLICT), any other error 408; a reply 200 with
    the device's JSON, 406 if it is not JSON, 200 without a body if there is none."""
    kind = req.params["kind"]
    if kind not in ("oneway", "twoway"):  # no such mapping
        return error_response(404, "Not Found", _ITEM_NOT_FOUND)
    device_uuid = _java_uuid(req.params["deviceId"])
    body = _jackson_body(req.body)
    method = _as_text(body["method"])
    params = body.get("params")
    timeout = _as_long(body["timeout"]) if "timeout" in body else RPC_DEFAULT_TIMEOUT_MS
    if "expirationTime" in body:
        expiration = _as_long(body["expirationTime"])
    else:
        expiration = hub.now_ms() + max(RPC_MIN_TIMEOUT_MS, timeout)
    try:
        request_uuid = _java_uuid(_as_text(body["requestUUID"])) if "requestUUID" in body else None
    except _ControllerError:  # an IllegalArgumentException inside handleDeviceRPCRequest's try
        raise _bad_request("Invalid request body") from None
    persistent = "persistent" in body and _as_boolean(body["persistent"])
    retries = _as_long(body["retries"], 32) if "retries" in body else None
    target = _device(hub, req, "DEVICE", device_uuid)
    outcome = await server_rpc(
        hub,
        target,
        oneway=kind == "oneway",
        method=method,
        params=params,
        expiration_ms=expiration,
        persistent=persistent,
        retries=retries,
        additional_info=body.get("additionalInfo"),
        request_uuid=request_uuid,
    )
    if outcome is None or outcome.error is not None:  # no answer: the service's own TIMEOUT
        no_connection = outcome is not None and outcome.error is RpcError.NO_ACTIVE_CONNECTION
        return (409 if no_connection else 408), PlainResponse()
    if not outcome.response:
        return 200, PlainResponse()
    try:
        return 200, orjson.loads(outcome.response)
    except orjson.JSONDecodeError:
        return 406, PlainResponse()


# ----------------------------------------------------------------------------- telemetry


def _keys(req: Request) -> list[str]:
    """getKeys: repeated ``key`` parameters, else ``keys`` split on ',' (nothing trimmed)."""
    if "key" in req.query:
        return list(req.query["key"])
    keys = req.query.get("keys", [""])[0]
    return keys.split(",") if keys else []


def _flag(req: Request, name: str) -> bool:
    """A Boolean @RequestParam: Spring reads true/false, on/off, yes/no, 1/0."""
    text = req.query.get(name, ["false"])[0].strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0", ""):
        return False
    raise _type_mismatch("java.lang.Boolean", text)


def _long_param(req: Request, name: str, default: int | None = None, *, bits: int = 64) -> int:
    """A Long (bits=32: Integer) @RequestParam; missing without a default or not a number: Spring's 400."""
    values = req.query.get(name)
    if values is None:
        if default is None:
            raise _bad_request(
                f"Required request parameter '{name}' for method parameter type Long is not present"
            )
        return default
    return _long_value(values[0].strip(), bits)


def _long_value(text: str, bits: int = 64) -> int:
    try:
        return gson.parse_long(text, bits)
    except gson.NumberFormatException:
        raise _type_mismatch("java.lang.Long", text) from None


def _scope(text: str) -> str:
    """AttributeScope from a path variable: the exact enum name, else Spring's 400."""
    if text.strip() not in SCOPES:
        raise _type_mismatch("org.thingsboard.server.common.data.AttributeScope", text)
    return text.strip()


def _type_mismatch(java_type: str, text: str) -> _ControllerError:
    """Spring's MethodArgumentTypeMismatchException, answered 400 by ThingsBoard's error handler."""
    return _bad_request(
        f"Failed to convert value of type 'java.lang.String' to required type '{java_type}': {text}"
    )


def _value_as_string(value: Any) -> str | None:
    """KvEntry.getValueAsString: a long's digits, Double.toString, "true"/"false", a JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return jackson.java_double_to_string(value)
    return gson.to_string(value)


def _ts_data(entries: list[tuple[str, int, Any]], strict: bool) -> dict[str, list[dict[str, Any]]]:
    """getTsKvListCallback: ``{key: [{"ts", "value"}]}``, values as strings unless useStrictDataTypes."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, ts, value in entries:
        out.setdefault(key, []).append({"ts": ts, "value": value if strict else _value_as_string(value)})
    return out


async def timeseries_keys(hub: Hub, req: Request) -> Result:
    """getTimeseriesKeys: the keys of the latest values."""
    entity_type = req.params["entityType"]
    device = _device(hub, req, entity_type, _entity_id(entity_type, req.params["entityId"]))
    return 200, list(device.latest)


async def timeseries_values(hub: Hub, req: Request) -> Result:
    """getLatestTimeseries; with startTs and endTs (4.4; 4.3: keys, startTs and endTs) getTimeseries."""
    version = hub.settings.thingsboard_version
    history_params = ("startTs", "endTs") if version is not TbVersion.V4_3 else ("keys", "startTs", "endTs")
    if all(p in req.query for p in history_params):
        return await _history(hub, req)
    keys = _keys(req)
    strict = _flag(req, "useStrictDataTypes")
    entity_type = req.params["entityType"]
    device = _device(hub, req, entity_type, _entity_id(entity_type, req.params["entityId"]))
    if not keys:
        entries = [(key, ts, value) for key, (ts, value) in device.latest.items()]
    else:  # findLatest: a key never saved reads as a null string at the current time
        now = hub.now_ms()
        entries = [(key, *device.latest.get(key, (now, None))) for key in keys]
    return 200, _ts_data(entries, strict)


async def timeseries_history(hub: Hub, req: Request) -> Result:
    """getTimeseriesHistory (4.4 only: a 4.3 server has no such path)."""
    if hub.settings.thingsboard_version is TbVersion.V4_3:
        return error_response(404, "Not Found", 32)
    return await _history(hub, req)


async def _history(hub: Hub, req: Request) -> Result:
    """getTimeseries with aggregation NONE: per key, ``startTs <= ts < endTs``, ``orderBy`` (DESC),
    at most ``limit`` (100); a value saved twice at one ts is the last one (the row is replaced)."""
    keys = _keys(req)
    start, end = _long_param(req, "startTs"), _long_param(req, "endTs")
    limit = _long_param(req, "limit", 100, bits=32)
    interval = _long_param(req, "interval", 0)
    order = req.query.get("orderBy", ["DESC"])[0]
    strict = _flag(req, "useStrictDataTypes")
    agg = req.query.get("agg", ["NONE"])[0]
    entity_type = req.params["entityType"]
    uuid = _entity_id(entity_type, req.params["entityId"])
    if agg not in _AGGREGATIONS:
        raise _bad_request(f"No enum constant org.thingsboard.server.common.data.kv.Aggregation.{agg}")
    device = _device(hub, req, entity_type, uuid)
    # DefaultTbTelemetryService.getTimeseries: an aggregation without an interval is none at all
    if agg != "NONE" and (interval != 0 or "intervalType" in req.query):
        raise _bad_request(f"aggregation {agg} is not emulated (only NONE)")
    entries: list[tuple[str, int, Any]] = []
    for key in keys:
        rows = {ts: values[key] for ts, values in device.history if key in values and start <= ts < end}
        ordered = sorted(rows.items(), reverse=order != "ASC")[: max(limit, 0)]
        entries.extend((key, ts, value) for ts, value in ordered)
    return 200, _ts_data(entries, strict)


async def attribute_keys(hub: Hub, req: Request) -> Result:
    """getAttributeKeys / getAttributeKeysByScope: every scope's keys (client, server, shared)."""
    scopes = (_scope(req.params["scope"]),) if "scope" in req.params else SCOPES
    entity_type = req.params["entityType"]
    device = _device(hub, req, entity_type, _entity_id(entity_type, req.params["entityId"]))
    return 200, [key for scope in scopes for key in device.attributes(scope)]


async def attribute_values(hub: Hub, req: Request) -> Result:
    """getAttributes / getAttributesByScope: ``[{"lastUpdateTs", "key", "value"}]``, typed values;
    a requested key that is not there is left out."""
    scopes = (_scope(req.params["scope"]),) if "scope" in req.params else SCOPES
    keys = _keys(req)
    entity_type = req.params["entityType"]
    device = _device(hub, req, entity_type, _entity_id(entity_type, req.params["entityId"]))
    out = []
    for scope in scopes:
        values = device.attributes(scope)
        for key in keys or list(values):
            if key in values:
                ts = device.attribute_ts.get((scope, key), 0)
                out.append({"lastUpdateTs": ts, "key": key, "value": values[key]})
    return 200, out


async def save_attributes(hub: Hub, req: Request) -> Result:
    """saveDeviceAttributes / saveEntityAttributesV1 / V2 -> saveAttributes: only SERVER_SCOPE and
    SHARED_SCOPE; a JSON object of values as JsonConverter.convertToAttributes reads them (a null
    value fails the request with a 500); shared ones are pushed to the device's sessions."""
    scope = _scope(req.params["scope"])  # converted by Spring before the method runs
    if not req.body:
        raise _bad_request("Required request body is missing")
    entity_type = req.params.get("entityType", "DEVICE")
    uuid = _entity_id(entity_type, req.params.get("entityId") or req.params["deviceId"])
    if scope not in _WRITABLE_SCOPES:
        return 400, PlainResponse(f"Invalid scope: {scope}")
    try:
        tree = gson.parse(req.body)
    except gson.JsonSyntaxException:
        return 400, PlainResponse("Invalid JSON")
    if not isinstance(tree, dict):
        return 400, PlainResponse("Request is not a JSON object")
    try:
        values = convert.attributes(tree, hub.settings.json, null_refused=True)
    except gson.JavaRuntimeException as exc:
        raise _ControllerError(500, str(exc), _GENERAL) from None
    if not values:
        return 400, PlainResponse("No attributes data found in request body!")
    if any(not key.strip() for key in values):
        return 400, PlainResponse("Key cannot be blank")
    device = _device(hub, req, entity_type, uuid)
    hub.save_attributes(device, scope, values, notify=True)
    return 200, PlainResponse()


async def save_timeseries(hub: Hub, req: Request) -> Result:
    """saveEntityTelemetry / saveEntityTelemetryWithTTL -> saveTelemetry: JsonConverter.convertToTelemetry
    (a null value is refused here, unlike the transport), stored at once, no rule-engine message."""
    if "ttl" in req.params:
        _long_value(req.params["ttl"])
    if not req.body:
        raise _bad_request("Required request body is missing")
    entity_type = req.params["entityType"]
    uuid = _entity_id(entity_type, req.params["entityId"])
    try:
        tree = gson.parse(req.body)
    except gson.JsonSyntaxException:
        return 400, PlainResponse("Unable to parse time series payload: Invalid JSON body!")
    try:
        groups = convert.telemetry_by_ts(tree, hub.now_ms(), hub.settings.json)
    except gson.JavaRuntimeException as exc:
        return 400, PlainResponse(f"Unable to parse time series payload. Invalid JSON body: {exc}")
    if not any(groups.values()):
        return 400, PlainResponse("No time series data found in request body!")
    device = _device(hub, req, entity_type, uuid)
    for ts, values in groups.items():
        hub.save_timeseries(device, ts, values)
    return 200, PlainResponse()


_TELEMETRY = "/api/plugins/telemetry"


# Literal segments before variables, as Spring prefers the more specific pattern
PLUGIN_ROUTES: Routes = [
    ("POST", "/api/plugins/rpc/{kind}/{deviceId}", _controller(rpc_v1_call)),
    ("GET", _TELEMETRY + "/{entityType}/{entityId}/keys/timeseries", _controller(timeseries_keys)),
    ("GET", _TELEMETRY + "/{entityType}/{entityId}/values/timeseries", _controller(timeseries_values)),
    (
        "GET",
        _TELEMETRY + "/{entityType}/{entityId}/values/timeseries/history",
        _controller(timeseries_history),
    ),
    ("GET", _TELEMETRY + "/{entityType}/{entityId}/keys/attributes", _controller(attribute_keys)),
    ("GET", _TELEMETRY + "/{entityType}/{entityId}/keys/attributes/{scope}", _controller(attribute_keys)),
    ("GET", _TELEMETRY + "/{entityType}/{entityId}/values/attributes", _controller(attribute_values)),
    (
        "GET",
        _TELEMETRY + "/{entityType}/{entityId}/values/attributes/{scope}",
        _controller(attribute_values),
    ),
    (
        "POST",
        _TELEMETRY + "/{entityType}/{entityId}/timeseries/{telemetryScope}",
        _controller(save_timeseries),
    ),
    (
        "POST",
        _TELEMETRY + "/{entityType}/{entityId}/timeseries/{telemetryScope}/{ttl}",
        _controller(save_timeseries),
    ),
    ("POST", _TELEMETRY + "/{entityType}/{entityId}/attributes/{scope}", _controller(save_attributes)),
    ("POST", _TELEMETRY + "/{entityType}/{entityId}/{scope}", _controller(save_attributes)),
    ("POST", _TELEMETRY + "/{deviceId}/{scope}", _controller(save_attributes)),
]
