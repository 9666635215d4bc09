"""The emulator's HTTP side: health, read-only views, server-side RPC, shared attributes, faults.

A small HTTP/1.1 server on asyncio streams (JSON in, JSON out, keep-alive), so the emulator needs no
web framework and runs in the same event loop as the MQTT side. Routes are a table of
(method, path pattern) -> handler; see ROUTES and docs/thingsboard.md for the list.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack.tb_emulator.convert import dumps as _dumps  # values parsed from devices keep their literals
from devstack.tb_emulator.faults import FaultsPatch
from devstack.tb_emulator.rest_admin import ADMIN_ROUTES
from devstack.tb_emulator.rest_plugins import PlainResponse, plugin_routes
from devstack.tb_emulator.rest_queues import QUEUE_ROUTES
from devstack.tb_emulator.rpc import RpcResult
from devstack.tb_emulator.rule_engine import MsgType, TbMsg

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device
    from devstack.tb_emulator.hub import Hub

log = structlog.get_logger("tb_emulator.http")

MAX_BODY_BYTES = 1_048_576


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None


Handler = Callable[["Hub", Request], Awaitable[tuple[int, Any]]]


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


async def health(hub: Hub, req: Request) -> tuple[int, Any]:
    return 200, {"status": "ok", "sessions": len(hub.sessions), "devices": len(hub.registry.by_name)}


async def devices(hub: Hub, req: Request) -> tuple[int, Any]:
    return 200, [d.view() for d in hub.registry.by_name.values()]


async def device(hub: Hub, req: Request) -> tuple[int, Any]:
    d = _device(hub, req.params["device"])
    view = d.view()
    view["clientAttributes"] = d.client_attributes
    view["sharedAttributes"] = d.shared_attributes
    view["serverAttributes"] = d.server_attributes
    view["latest"] = {k: {"ts": ts, "value": v} for k, (ts, v) in d.latest.items()}
    return 200, view


async def latest(hub: Hub, req: Request) -> tuple[int, Any]:
    d = _device(hub, req.params["device"])
    return 200, {k: {"ts": ts, "value": v} for k, (ts, v) in d.latest.items()}


async def timeseries(hub: Hub, req: Request) -> tuple[int, Any]:
    d = _device(hub, req.params["device"])
    since = int(req.query.get("since", ["0"])[0])
    return 200, [{"ts": ts, "values": values} for ts, values in d.history if ts >= since]


async def sessions(hub: Hub, req: Request) -> tuple[int, Any]:
    out = []
    for s in hub.sessions.values():
        view = s.view()
        view["subDevices"] = sorted(hub.sub_sessions.get(s.id, {}))
        out.append(view)
    return 200, out


async def rpc_list(hub: Hub, req: Request) -> tuple[int, Any]:
    name = req.query.get("device", [None])[0]
    records = [r.view() for r in hub.rpc.records.values() if name is None or r.device == name]
    return 200, records


async def rpc_one(hub: Hub, req: Request) -> tuple[int, Any]:
    record = hub.rpc.records.get(req.params["rpc"])
    if record is None:
        raise HttpError(404, f"rpc {req.params['rpc']!r} not found")
    return 200, record.view()


async def rpc_call(hub: Hub, req: Request) -> tuple[int, Any]:
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


async def server_rpc(
    hub: Hub,
    target: Device,
    *,
    oneway: bool,
    method: str,
    params: Any,
    expiration_ms: int,
    persistent: bool,
    retries: int | None,
    additional_info: Any,
    request_uuid: str | None = None,
) -> RpcResult | None:
    """A REST RPC as DefaultTbCoreDeviceRpcService sends it: an RPC_CALL_FROM_SERVER_TO_DEVICE message
    into the target's rule chain, then the answer its "RPC Request to Device" path gives (None if
    none by a second after expiry)."""
    request_uuid = request_uuid or _uuid()
    metadata = {
        "deviceName": target.name,
        "deviceType": target.type,
        "requestUUID": request_uuid,
        "expirationTime": str(expiration_ms),
        "oneway": "true" if oneway else "false",
        "persistent": "true" if persistent else "false",
        "originServiceId": "tb-emulator",
    }
    if retries is not None:
        metadata["retries"] = str(retries)
    data = {"method": method, "params": params, "additionalInfo": additional_info}
    result: asyncio.Future[RpcResult] = hub.loop.create_future()
    hub.rest_rpc_waiters[request_uuid] = result
    hub.push_to_rule_engine(
        TbMsg(MsgType.RPC_CALL_FROM_SERVER_TO_DEVICE, target, _dumps(data), metadata, data)
    )
    try:
        return await asyncio.wait_for(result, timeout=max(0.0, (expiration_ms - hub.now_ms()) / 1000) + 1.0)
    except TimeoutError:
        return None
    finally:
        hub.rest_rpc_waiters.pop(request_uuid, None)


async def shared_attributes(hub: Hub, req: Request) -> tuple[int, Any]:
    d = _device(hub, req.params["device"])
    values = req.json()
    if not isinstance(values, dict) or not values:
        raise HttpError(400, "body must be a non-empty JSON object of attributes")
    hub.update_shared_attributes(d, values)
    return 200, d.shared_attributes


async def faults_get(hub: Hub, req: Request) -> tuple[int, Any]:
    return 200, hub.faults.model_dump()


async def faults_patch(hub: Hub, req: Request) -> tuple[int, Any]:
    try:
        patch = FaultsPatch.model_validate(req.json())
    except ValidationError as exc:
        raise HttpError(400, str(exc)) from None
    for key, value in patch.model_dump(exclude_unset=True).items():
        setattr(hub.faults, key, value)
    return 200, hub.faults.model_dump()


async def faults_reset(hub: Hub, req: Request) -> tuple[int, Any]:
    for key, value in type(hub.faults)().model_dump().items():
        setattr(hub.faults, key, value)
    return 200, hub.faults.model_dump()


async def cut_session(hub: Hub, req: Request) -> tuple[int, Any]:
    name = req.params["device"]
    _device(hub, name)
    return 200, {"cut": hub.cut_sessions(name)}


async def redeliver(hub: Hub, req: Request) -> tuple[int, Any]:
    name = req.params["device"]
    _device(hub, name)
    return 200, {"redelivered": hub.redeliver_pending(name)}


async def webhook_calls(hub: Hub, req: Request) -> tuple[int, Any]:
    return 200, list(hub.http_poster.calls)


async def stats(hub: Hub, req: Request) -> tuple[int, Any]:
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


ROUTES: list[tuple[str, str, Handler]] = [
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
    # ThingsBoard's documented RPC and telemetry paths: rest_plugins.py
    *plugin_routes(server_rpc),
]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)}", r"(?P<\1>[^/]+)", pattern) + "$")


_COMPILED = [(method, _compile(path), handler) for method, path, handler in ROUTES]


def _uuid() -> str:
    return str(uuid.uuid4())


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}


class HttpServer:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                try:
                    method, target, _ = request_line.decode("latin-1").split(" ", 2)
                except ValueError:
                    await self._send(writer, 400, {"error": "bad request line"}, keep_alive=False)
                    return
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = line.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length > MAX_BODY_BYTES:
                    await self._send(writer, 413, {"error": "body too large"}, keep_alive=False)
                    return
                body = await reader.readexactly(length) if length else b""
                keep_alive = headers.get("connection", "").lower() != "close"
                status, payload = await self._dispatch(method.upper(), target, body, headers)
                await self._send(writer, status, payload, keep_alive=keep_alive)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _dispatch(
        self, method: str, target: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        split = urlsplit(target)
        allowed = False
        for route_method, pattern, handler in _COMPILED:
            match = pattern.match(split.path)
            if match is None:
                continue
            allowed = True
            if route_method != method:
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            request = Request(method, split.path, parse_qs(split.query), body, params, headers or {})
            try:
                return await handler(self.hub, request)
            except HttpError as exc:
                return exc.status, {"error": str(exc)}
            except Exception as exc:
                log.exception("http handler failed", path=split.path)
                return 500, {"error": f"{type(exc).__name__}: {exc}"}
        if allowed:
            return 405, {"error": f"{method} not allowed on {split.path}"}
        return 404, {"error": f"no route {split.path}"}

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, payload: Any, *, keep_alive: bool) -> None:
        if isinstance(payload, PlainResponse):  # a controller's String body, or none
            body, content_type = payload.text.encode(), "text/plain;charset=UTF-8"
        else:
            body, content_type = _dumps(payload).encode(), "application/json"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
