"""ThingsBoard's queue endpoints: the system administrator creates and updates rule-engine queues, a
tenant administrator reads them; a queue saved here runs at once (queues.py).

Follows thingsboard/thingsboard @dfe65d5, the same in behaviour at v4.3.0.1:
application/src/main/java/org/thingsboard/server/controller/QueueController.java (paths, @PreAuthorize,
serviceType, the page of queues), service/entitiy/queue/DefaultTbQueueService.java (saveQueue: save,
then the queue update event), dao/src/main/java/org/thingsboard/server/dao/queue/BaseQueueService.java
(a tenant that is not isolated sees the system's queues), dao/.../service/DataValidator.java and
dao/.../service/validator/QueueValidator.java (what a save refuses, in that order, with those
messages), controller/BaseController.java (checkParameter, checkEntity, the errors), and
dao/.../sql/JpaAbstractDao.java (ids and createdTime):

- ``GET /api/queues?serviceType=TB_RULE_ENGINE&pageSize=..&page=..[&textSearch=..]``: SYS_ADMIN or
  TENANT_ADMIN; a page of the queues (name prefix search, case-insensitive); another known service
  type: an empty page.
- ``GET /api/queues/name/{queueName}``: SYS_ADMIN or TENANT_ADMIN; 404 "Requested item wasn't found!".
- ``POST /api/queues?serviceType=TB_RULE_ENGINE``: SYS_ADMIN only (a tenant administrator: 403). No
  ``id``: create (a time-based id, createdTime now, tenantId the system tenant); with the ``id`` of a
  queue: update it (name and topic cannot change). The answer is the saved queue; another known
  service type saves nothing and answers 200 without a body.

The body is read as Spring's Jackson reads a Queue: properties it does not have (``createdTime`` of a
new queue, anything else) ignored, ``null`` for a number or boolean its Java default. Not emulated:
Jackson's other scalar coercions where they differ from pydantic's lax mode (a fraction truncated to
an int, for one: refused here as unreadable), the text of its parse errors, NoXss (AntiSamy) on name,
topic and additionalInfo, DELETE /api/queues/{id}, GET /api/queues/{id}, sorting, isolated tenants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import orjson
from pydantic import ValidationError

from devstack.tb_emulator.queues import ProcessingStrategy, QueueConfig, SubmitStrategy
from devstack.tb_emulator.rest import PlainResponse, Request, Result, Routes
from devstack.tb_emulator.rest_admin import (
    SYS_ADMIN,
    SYS_TENANT_ID,
    TENANT_ADMIN,
    error_response,
    paged,
    refused,
)

if TYPE_CHECKING:
    from devstack.tb_emulator.hub import Hub


_BAD_REQUEST_PARAMS, _ITEM_NOT_FOUND = 31, 32  # ThingsboardErrorCode
# common/message/.../msg/queue/ServiceType.java: the values ServiceType.of accepts
_SERVICE_TYPES = frozenset(
    {"TB_CORE", "TB_RULE_ENGINE", "TB_TRANSPORT", "JS_EXECUTOR", "TB_VC_EXECUTOR", "EDQS", "TASK_PROCESSOR"}
)
_JAVA_INT = (-(2**31), 2**31 - 1)
_JAVA_LONG = (-(2**63), 2**63 - 1)
# Queue's (and its strategies') Java primitives: JSON null is their default (FAIL_ON_NULL_FOR_PRIMITIVES
# is off), a number must fit
_PRIMITIVES: dict[str, tuple[int, int] | None] = {
    "pollInterval": _JAVA_INT,
    "partitions": _JAVA_INT,
    "consumerPerPartition": None,
    "packProcessingTimeout": _JAVA_LONG,
    "batchSize": _JAVA_INT,
    "retries": _JAVA_INT,
    "failurePercentage": None,
    "pauseBetweenRetries": _JAVA_LONG,
    "maxPauseBetweenRetries": _JAVA_LONG,
}


def _aliases(model: type[QueueConfig] | type[SubmitStrategy] | type[ProcessingStrategy]) -> frozenset[str]:
    return frozenset(field.alias or name for name, field in model.model_fields.items())


_QUEUE_FIELDS = _aliases(QueueConfig)
_NESTED = {"submitStrategy": _aliases(SubmitStrategy), "processingStrategy": _aliases(ProcessingStrategy)}


@dataclass(frozen=True, slots=True)
class _Entity:
    """What the database adds to a queue's settings."""

    id: str
    created_ms: int


_ENTITIES: WeakKeyDictionary[Hub, dict[str, _Entity]] = WeakKeyDictionary()
_NAMESPACE = uuid.UUID("6d1c5a1e-7f6b-4a0e-9a55-1c0ffee00003")


def _entities(hub: Hub) -> dict[str, _Entity]:
    """Queue name -> its entity; a queue the emulator started with gets one on first sight."""
    known = _ENTITIES.setdefault(hub, {})
    for name in hub.queues.by_name:
        if name not in known:
            known[name] = _Entity(str(uuid.uuid5(_NAMESPACE, f"queue:{name}")), hub.now_ms())
    return known


def _queue_json(config: QueueConfig, entity: _Entity) -> dict[str, Any]:
    return {
        "id": {"entityType": "QUEUE", "id": entity.id},
        "createdTime": entity.created_ms,
        "additionalInfo": config.additional_info,
        "tenantId": {"entityType": "TENANT", "id": SYS_TENANT_ID},
        **config.model_dump(mode="json", by_alias=True, exclude={"additional_info"}),
    }


def _bad_request(message: str) -> Result:
    return error_response(400, message, _BAD_REQUEST_PARAMS)


def _missing(req: Request, *params: tuple[str, str]) -> Result | None:
    """Spring's answer to a required @RequestParam (name, Java type) left out: 400, before the method
    (and its @PreAuthorize) runs."""
    for name, java_type in params:
        if name not in req.query:
            return _bad_request(
                f"Required request parameter '{name}' for method parameter type {java_type} is not present"
            )
    return None


def _blank_service_type(req: Request) -> Result | None:
    """checkParameter("serviceType", ...): blank is 400."""
    if not req.query["serviceType"][0].strip():
        return _bad_request("Parameter 'serviceType' can't be empty!")
    return None


def _service_type(req: Request) -> tuple[str, Result | None]:
    """ServiceType.of: an unknown one is an IllegalArgumentException, 400."""
    name = req.query["serviceType"][0].replace("-", "_").upper()
    if name not in _SERVICE_TYPES:
        return name, _bad_request(
            f"No enum constant org.thingsboard.server.common.msg.queue.ServiceType.{name}"
        )
    return name, None


async def queues(hub: Hub, req: Request) -> Result:
    """getTenantQueuesByServiceType."""
    if (answer := refused(hub, req, SYS_ADMIN, TENANT_ADMIN)) is not None:
        return answer
    missing = _missing(req, ("serviceType", "String"), ("pageSize", "int"), ("page", "int"))
    if missing is not None:
        return missing
    if (blank := _blank_service_type(req)) is not None:
        return blank
    service_type, error = _service_type(req)
    if error is not None:
        return error
    if service_type != "TB_RULE_ENGINE":
        return 200, {"data": [], "totalPages": 0, "totalElements": 0, "hasNext": False}
    entities = _entities(hub)
    listed = [_queue_json(q.config, entities[name]) for name, q in hub.queues.by_name.items()]
    return paged(listed, req)


async def queue_by_name(hub: Hub, req: Request) -> Result:
    """getQueueByName."""
    if (answer := refused(hub, req, SYS_ADMIN, TENANT_ADMIN)) is not None:
        return answer
    queue = hub.queues.by_name.get(req.params["queueName"])
    if queue is None:
        return error_response(404, "Requested item wasn't found!", _ITEM_NOT_FOUND)
    return 200, _queue_json(queue.config, _entities(hub)[queue.config.name])


class _Unreadable(ValueError):
    """Spring's HttpMessageNotReadableException: the body is not a Queue (400)."""


def _fields(body: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The properties Jackson sets: known ones, null primitives left at their default, numbers in range."""
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key not in known or (value is None and key in _PRIMITIVES):
            continue
        bounds = _PRIMITIVES.get(key)
        if bounds is not None and isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
            kind = "int" if bounds == _JAVA_INT else "long"
            raise _Unreadable(f"JSON parse error: Numeric value ({value}) out of range of {kind}")
        if key in _NESTED and isinstance(value, dict):
            value = _fields(value, _NESTED[key])
        fields[key] = value
    return fields


def _read(body: bytes) -> tuple[dict[str, Any], QueueConfig | None, str | None]:
    """The body as a Queue: (the JSON object, the queue's settings, or QueueValidator's refusal).

    Raises _Unreadable where Jackson could not bind it."""
    if not body:
        raise _Unreadable("Required request body is missing")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Unreadable(f"JSON parse error: {exc}") from None
    if not isinstance(document, dict):
        raise _Unreadable("JSON parse error: Cannot deserialize value of type `Queue` from a non-object")
    ref = document.get("id")
    if ref is not None and not (isinstance(ref, dict) and _is_uuid(ref.get("id"))):
        raise _Unreadable('JSON parse error: the queue\'s id is not {"id": UUID}')
    try:
        return document, QueueConfig.model_validate(_fields(document, _QUEUE_FIELDS)), None
    except ValidationError as exc:
        errors = exc.errors()
        if all(not e["loc"] and e["type"] == "value_error" for e in errors):  # the validator's own
            return document, None, str(errors[0]["msg"]).removeprefix("Value error, ")
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _Unreadable(f"JSON parse error: {where}: {first['msg']}") from None


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _refusal(hub: Hub, config: QueueConfig, existing_id: str | None) -> str | None:
    """QueueValidator.validateCreate / validateUpdate, in the system tenant."""
    entities = _entities(hub)
    if existing_id is None:
        if config.name in hub.queues.by_name:
            return f"Queue with name: {config.name} already exists!"
        if any(q.config.topic == config.topic for q in hub.queues.by_name.values()):
            return f"Queue with topic: {config.topic} already exists!"
        return None
    current = next(q.config for name, q in hub.queues.by_name.items() if entities[name].id == existing_id)
    if current.name != config.name:
        return "Queue name can't be changed!"
    if current.topic != config.topic:
        return "Queue topic can't be changed!"
    return None


async def save_queue(hub: Hub, req: Request) -> Result:
    """saveQueue: the body (Jackson), the serviceType parameter, @PreAuthorize SYS_ADMIN, then
    checkEntity, ServiceType.of, DefaultTbQueueService.saveQueue."""
    if (answer := refused(hub, req, SYS_ADMIN, TENANT_ADMIN)) is not None:  # the login filter: 401
        return answer
    try:
        document, config, refusal = _read(req.body)
    except _Unreadable as exc:
        return _bad_request(str(exc))
    if (missing := _missing(req, ("serviceType", "String"))) is not None:
        return missing
    if (answer := refused(hub, req, SYS_ADMIN)) is not None:  # @PreAuthorize: 403
        return answer
    if (blank := _blank_service_type(req)) is not None:
        return blank
    entities = _entities(hub)
    existing_id = str(uuid.UUID(document["id"]["id"])) if document.get("id") is not None else None
    if existing_id is not None and existing_id not in {e.id for e in entities.values()}:
        return error_response(404, f"Queue with id [{existing_id}] is not found", _ITEM_NOT_FOUND)
    service_type, error = _service_type(req)
    if error is not None:
        return error
    if service_type != "TB_RULE_ENGINE":
        return 200, PlainResponse()
    if config is None or (refusal := _refusal(hub, config, existing_id)) is not None:
        return _bad_request(refusal or "")
    if existing_id is None:
        entity = _Entity(str(uuid.uuid1()), hub.now_ms())  # JpaAbstractDao.save: a new time-based id
    else:  # the createdTime sent is kept (0: now)
        created = document.get("createdTime")
        entity = _Entity(existing_id, created if isinstance(created, int) and created else hub.now_ms())
    entities[config.name] = entity
    hub.queues.save(config)  # tbClusterService.onQueuesUpdate: the rule engine takes it at once
    return 200, _queue_json(config, entity)


QUEUE_ROUTES: Routes = [
    ("GET", "/api/queues", queues),
    ("GET", "/api/queues/name/{queueName}", queue_by_name),
    ("POST", "/api/queues", save_queue),
]
