"""The emulator's HTTP side: health, read-only views, server-side RPC, shared attributes, faults;
with ThingsBoard's own REST controllers (rest_admin.py, rest_queues.py, rest_plugins.py), served by
Starlette in the emulator's event loop. See ROUTES and docs/thingsboard.md for the list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette

from devstack.tb_emulator import rest
from devstack.tb_emulator.faults import FaultsPatch
from devstack.tb_emulator.rest import HttpError, Request, Result
from devstack.tb_emulator.rest_admin import ADMIN_ROUTES
from devstack.tb_emulator.rest_plugins import PLUGIN_ROUTES
from devstack.tb_emulator.rest_queues import QUEUE_ROUTES
from devstack.tb_emulator.server_rpc import server_rpc

if TYPE_CHECKING:
    from devstack.tb_emulator.hub import Hub


class RpcCall(BaseModel):
    """Body of POST /api/rpc/{oneway|twoway}/{device}, as ThingsBoard's RpcV2Controller takes it."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1)
    params: Any = Field(default_factory=dict)
    timeout: int = Field(default=10_000, ge=1)
    expirationTime: int | None = None  # noqa: N815 (ThingsBoard's field name)
    persistent: bool = False
    retries: int | None = Field(default=None, ge=0)
    additionalInfo: Any = None  # noqa: N815


def _device(hub: Hub, name_or_id: str) -> Any:
    device = hub.registry.lookup(name_or_id)
    if device is None:
        raise HttpError(404, f"device {name_or_id!r} not found")
    return device


async def health(hub: Hub, req: Request) -> Result:
    return 200, {"status": "ok", "sessions": len(hub.sessions), "devices": len(hub.registry.by_name)}


async def devices(hub: Hub, req: Request) -> Result:
    return 200, [d.view() for d in hub.registry.by_name.values()]


async def device(hub: Hub, req: Request) -> Result:
    d = _device(hub, req.params["device"])
    view = d.view()
    view["clientAttributes"] = d.client_attributes
    view["sharedAttributes"] = d.shared_attributes
    view["serverAttributes"] = d.server_attributes
    view["latest"] = {k: {"ts": ts, "value": v} for k, (ts, v) in d.latest.items()}
    return 200, view


async def latest(hub: Hub, req: Request) -> Result:
    d = _device(hub, req.params["device"])
    return 200, {k: {"ts": ts, "value": v} for k, (ts, v) in d.latest.items()}


async def timeseries(hub: Hub, req: Request) -> Result:
    d = _device(hub, req.params["device"])
    since = int(req.query.get("since", ["0"])[0])
    return 200, [{"ts": ts, "values": values} for ts, values in d.history if ts >= since]


async def sessions(hub: Hub, req: Request) -> Result:
    out = []
    for s in hub.sessions.values():
        view = s.view()
        view["subDevices"] = sorted(hub.sub_sessions.get(s.id, {}))
        out.append(view)
    return 200, out


async def rpc_list(hub: Hub, req: Request) -> Result:
    name = req.query.get("device", [None])[0]
    records = [r.view() for r in hub.rpc.records.values() if name is None or r.device == name]
    return 200, records


async def rpc_one(hub: Hub, req: Request) -> Result:
    record = hub.rpc.records.get(req.params["rpc"])
    if record is None:
        raise HttpError(404, f"rpc {req.params['rpc']!r} not found")
    return 200, record.view()


async def rpc_call(hub: Hub, req: Request) -> Result:
    """Server-side RPC through the rule chain, like ThingsBoard's REST API (RpcV2Controller)."""
    kind = req.params["kind"]
    if kind not in ("oneway", "twoway"):
        raise HttpError(404, "use /api/rpc/oneway/{device} or /api/rpc/twoway/{device}")
    try:
        call = RpcCall.model_validate(req.json())
    except ValidationError as exc:
        raise HttpError(400, str(exc)) from None
    target = _device(hub, req.params["device"])
    outcome = await server_rpc(
        hub,
        target,
        oneway=kind == "oneway",
        method=call.method,
        params=call.params,
        expiration_ms=call.expirationTime or hub.now_ms() + call.timeout,
        persistent=call.persistent,
        retries=call.retries,
        additional_info=call.additionalInfo,
    )
    if outcome is None:
        return 504, {"error": "TIMEOUT"}
    if outcome.error is not None:
        return 504, {"error": outcome.error.value}
    if outcome.response is None:
        return 200, None
    try:
        return 200, orjson.loads(outcome.response)
    except orjson.JSONDecodeError:
        return 200, outcome.response


async def shared_attributes(hub: Hub, req: Request) -> Result:
    d = _device(hub, req.params["device"])
    values = req.json()
    if not isinstance(values, dict) or not values:
        raise HttpError(400, "body must be a non-empty JSON object of attributes")
    hub.update_shared_attributes(d, values)
    return 200, d.shared_attributes


async def faults_get(hub: Hub, req: Request) -> Result:
    return 200, hub.faults.model_dump()


async def faults_patch(hub: Hub, req: Request) -> Result:
    try:
        patch = FaultsPatch.model_validate(req.json())
    except ValidationError as exc:
        raise HttpError(400, str(exc)) from None
    for key, value in patch.model_dump(exclude_unset=True).items():
        setattr(hub.faults, key, value)
    return 200, hub.faults.model_dump()


async def faults_reset(hub: Hub, req: Request) -> Result:
    for key, value in type(hub.faults)().model_dump().items():
        setattr(hub.faults, key, value)
    return 200, hub.faults.model_dump()


async def cut_session(hub: Hub, req: Request) -> Result:
    name = req.params["device"]
    _device(hub, name)
    return 200, {"cut": hub.cut_sessions(name)}


async def redeliver(hub: Hub, req: Request) -> Result:
    name = req.params["device"]
    _device(hub, name)
    return 200, {"redelivered": hub.redeliver_pending(name)}


async def webhook_calls(hub: Hub, req: Request) -> Result:
    return 200, list(hub.http_poster.calls)


async def stats(hub: Hub, req: Request) -> Result:
    chains = hub.chains.values()
    return 200, {
        **hub.stats,
        "sessions": len(hub.sessions),
        "ruleEngineMsgs": sum(c.processed for c in chains),
        "ruleEngineFailures": sum(c.failures for c in chains),
        "ruleEngineRetries": sum(q.stats.retries for q in hub.queues.by_name.values()),
        "ruleEngineQueues": hub.queues.view(),
        "webhookInFlight": hub.http_poster.in_flight,
    }


ROUTES: rest.Routes = [
    ("GET", "/health", health),
    ("GET", "/api/stats", stats),
    ("GET", "/api/devices", devices),
    ("GET", "/api/devices/{device}", device),
    ("GET", "/api/devices/{device}/telemetry", latest),
    ("GET", "/api/devices/{device}/timeseries", timeseries),
    ("POST", "/api/devices/{device}/attributes/shared", shared_attributes),
    ("GET", "/api/sessions", sessions),
    ("GET", "/api/rpc", rpc_list),
    ("GET", "/api/rpc/{rpc}", rpc_one),
    ("POST", "/api/rpc/{kind}/{device}", rpc_call),
    ("GET", "/api/webhook/calls", webhook_calls),
    ("GET", "/api/faults", faults_get),
    ("PATCH", "/api/faults", faults_patch),
    ("POST", "/api/faults/reset", faults_reset),
    ("POST", "/api/faults/cut-session/{device}", cut_session),
    ("POST", "/api/faults/redeliver-rpc/{device}", redeliver),
    # ThingsBoard's own admin REST API (the part `giftwheel tb provision` uses): rest_admin.py
    *ADMIN_ROUTES,
    *QUEUE_ROUTES,  # the system administrator's rule-engine queues: rest_queues.py
    *PLUGIN_ROUTES,  # ThingsBoard's documented RPC and telemetry paths: rest_plugins.py
]


def app(hub: Hub) -> Starlette:
    return rest.app(hub, ROUTES)
