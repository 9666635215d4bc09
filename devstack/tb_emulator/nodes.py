"""The rule node types the emulator executes, as a table from ThingsBoard class name to implementation.

Each follows its ThingsBoard class (rule-engine-components, named in the docstring) for the
configuration fields, the relations it emits and the message it passes on. Script nodes (TBEL/JS)
are deliberately absent: the chain we ship routes with configuration only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from devstack.tb_emulator.convert import dumps
from devstack.tb_emulator.patterns import process_pattern
from devstack.tb_emulator.rpc import RpcResult, new_request, now_ms
from devstack.tb_emulator.rule_engine import (
    FAILURE,
    MSG_TYPE_RELATIONS,
    OTHER_RELATION,
    SUCCESS,
    Emit,
    MsgType,
    Node,
    TbMsg,
)

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device
    from devstack.tb_emulator.rpc import RpcRequest
    from devstack.tb_emulator.webhook import HttpResult


class NodeContext(Protocol):
    """What nodes may touch in the emulator (ThingsBoard's TbContext, reduced)."""

    def device_by_name(self, name: str) -> Device | None: ...
    def submit_rpc(self, device: Device, request: RpcRequest) -> None: ...
    def reply_to_client_rpc(self, session_id: str, request_id: int, payload: str) -> bool: ...
    def save_timeseries(self, device: Device, ts: int, values: dict[str, Any]) -> None: ...
    def save_attributes(self, device: Device, scope: str, values: dict[str, Any], notify: bool) -> None: ...
    def spawn(self, coro: Any) -> None: ...
    async def http(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult: ...


class MsgTypeSwitch:
    """filter.TbMsgTypeSwitchNode: relation = the message type's connection name, else "Other"."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        pass

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        emit(msg, MSG_TYPE_RELATIONS.get(msg.type, OTHER_RELATION))


class DeviceProfileSwitch:
    """filter.TbDeviceTypeSwitchNode ("device profile switch"): relation = the device profile name."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        pass

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        emit(msg, msg.originator.type)


class ChangeOriginator:
    """transform.TbChangeOriginatorNode, source ENTITY, entity type DEVICE, by name pattern."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        source = config.get("originatorSource")
        if source != "ENTITY" or config.get("entityType") != "DEVICE":
            raise ValueError(
                f"only originatorSource ENTITY with entityType DEVICE is emulated, got {source!r}"
            )
        pattern = config.get("entityNamePattern")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("entityNamePattern is required")
        self.ctx = ctx
        self.pattern = pattern

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        name = process_pattern(self.pattern, msg.metadata, msg.json())
        device = self.ctx.device_by_name(name)
        if device is None:
            # EntitiesByNameAndTypeLoader: "Failed to find device with name ..." -> Failure
            emit(msg, FAILURE)
            return
        emit(msg.copy(originator=device), SUCCESS)


class SendRpcRequest:
    """rpc.TbSendRPCRequestNode: data {method, params}; metadata oneway, persistent, expirationTime..."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.timeout_s = int(config.get("timeoutInSeconds", 60))
        if self.timeout_s <= 0:
            raise ValueError("timeoutInSeconds must be positive")

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        data = msg.json()
        if not isinstance(data, dict) or "method" not in data:
            emit(msg, FAILURE)  # "Method is not present in the message!"
            return
        if "params" not in data:
            emit(msg, FAILURE)  # "Params are not present in the message!"
            return
        md = msg.metadata
        expiration = md.get("expirationTime")
        retries = md.get("retries")
        request = new_request(
            method=str(data["method"]),
            params=data["params"],
            timeout_ms=self.timeout_s * 1000,
            oneway=md.get("oneway", "").lower() == "true",  # Boolean.parseBoolean
            persistent=md.get("persistent", "").lower() == "true",
            expiration_ms=int(expiration) if expiration and expiration.isdigit() else None,
            retries=int(retries) if retries and retries.isdigit() else None,
            request_uuid=md.get("requestUUID"),
            additional_info=data.get("additionalInfo"),
        )

        def done(result: RpcResult) -> None:
            # The answer is a new message on the input's queue (enqueueForTellNext/-TellFailure), with
            # the input's type, originator and metadata (requestId, sessionId, serviceId of a
            # dispatcher's client RPC survive for the reply node)
            if result.error is None:
                emit.enqueue(msg.copy(data=result.response if result.response is not None else "{}"), SUCCESS)
            else:
                error = result.error.value
                emit.enqueue(msg.copy(data=dumps({"error": error})), FAILURE, error)

        request.callbacks.append(done)
        self.ctx.submit_rpc(msg.originator, request)
        emit.ack(msg)  # done once the request is with the device actor, not when the device answers


class SendRpcReply:
    """rpc.TbSendRPCReplyNode: answer a device's client-side RPC found by service/session/request id."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.service_key = config.get("serviceIdMetaDataAttribute") or "serviceId"
        self.session_key = config.get("sessionIdMetaDataAttribute") or "sessionId"
        self.request_key = config.get("requestIdMetaDataAttribute") or "requestId"

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        md = msg.metadata
        request_id = md.get(self.request_key)
        session_id = md.get(self.session_key)
        if not request_id or not md.get(self.service_key) or not session_id or not msg.data:
            emit(msg, FAILURE)
            return
        try:
            number = int(request_id)
        except ValueError:
            emit(msg, FAILURE)
            return
        self.ctx.reply_to_client_rpc(session_id, number, msg.data)
        emit(msg, SUCCESS)


class RestApiCall:
    """rest.TbRestApiCallNode: URL and headers from patterns, body = message data, async.

    Success carries the response body as data with metadata status/statusCode/statusReason;
    a transport error or a status >= 400 goes to Failure (metadata error, and status fields if any).
    """

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.url = config["restEndpointUrlPattern"]
        self.method = str(config.get("requestMethod", "POST")).upper()
        self.headers: dict[str, str] = dict(config.get("headers") or {})
        self.timeout_s = (config.get("readTimeoutMs") or 0) / 1000 or 60.0
        self.ignore_body = bool(config.get("ignoreRequestBody", False))
        if not isinstance(self.url, str) or not self.url:
            raise ValueError("restEndpointUrlPattern is required")

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        data = msg.json()
        url = process_pattern(self.url, msg.metadata, data)
        headers = {
            process_pattern(k, msg.metadata, data): process_pattern(v, msg.metadata, data)
            for k, v in self.headers.items()
        }
        send_body = self.method in ("POST", "PUT", "PATCH") and not self.ignore_body
        body = msg.data.encode() if send_body else None
        self.ctx.spawn(self._call(msg, emit, url, headers, body))

    async def _call(
        self, msg: TbMsg, emit: Emit, url: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        result = await self.ctx.http(self.method, url, headers, body, self.timeout_s)
        metadata = dict(msg.metadata)
        if result.status_code is not None:
            metadata.update(
                status=result.reason, statusCode=str(result.status_code), statusReason=result.reason
            )
        if result.error is None and result.status_code is not None and result.status_code < 400:
            emit(msg.copy(data=result.body, metadata=metadata), SUCCESS)
            return
        metadata["error"] = result.error or f"{result.status_code}: {result.body}"
        if result.body:
            metadata["error_body"] = result.body
        emit(msg.copy(metadata=metadata), FAILURE)


class SaveTimeseries:
    """telemetry.TbMsgTimeseriesNode: stores a POST_TELEMETRY_REQUEST at metadata ts (or now)."""

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.use_server_ts = bool(config.get("useServerTs", False))

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        values = msg.json()
        if msg.type != MsgType.POST_TELEMETRY_REQUEST or not isinstance(values, dict):
            emit(msg, FAILURE)  # "Unsupported msg type: ..."
            return
        ts_text = msg.metadata.get("ts", "")
        ts = now_ms() if self.use_server_ts or not ts_text.isdigit() else int(ts_text)
        self.ctx.save_timeseries(msg.originator, ts, values)
        emit(msg, SUCCESS)


class SaveAttributes:
    """telemetry.TbMsgAttributesNode: stores a POST_ATTRIBUTES_REQUEST in the configured scope."""

    SCOPES = ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE")

    def __init__(self, ctx: NodeContext, config: dict[str, Any]) -> None:
        self.ctx = ctx
        self.scope = config.get("scope", "CLIENT_SCOPE")
        if self.scope not in self.SCOPES:
            raise ValueError(f"unknown attribute scope {self.scope!r}")
        self.notify = bool(config.get("notifyDevice", False))

    def on_msg(self, msg: TbMsg, emit: Emit) -> None:
        values = msg.json()
        if msg.type != MsgType.POST_ATTRIBUTES_REQUEST or not isinstance(values, dict):
            emit(msg, FAILURE)
            return
        self.ctx.save_attributes(msg.originator, self.scope, values, self.notify)
        emit(msg, SUCCESS)


_PKG = "org.thingsboard.rule.engine."
NODE_TYPES: dict[str, Callable[[NodeContext, dict[str, Any]], Node]] = {
    _PKG + "filter.TbMsgTypeSwitchNode": MsgTypeSwitch,
    _PKG + "filter.TbDeviceTypeSwitchNode": DeviceProfileSwitch,
    _PKG + "transform.TbChangeOriginatorNode": ChangeOriginator,
    _PKG + "rpc.TbSendRPCRequestNode": SendRpcRequest,
    _PKG + "rpc.TbSendRPCReplyNode": SendRpcReply,
    _PKG + "rest.TbRestApiCallNode": RestApiCall,
    _PKG + "telemetry.TbMsgTimeseriesNode": SaveTimeseries,
    _PKG + "telemetry.TbMsgAttributesNode": SaveAttributes,
}


def bind(ctx: NodeContext) -> dict[str, Callable[[dict[str, Any]], Node]]:
    """The node table with the emulator's context bound in, for ``rule_engine.build_engine``."""
    return {name: functools.partial(cls, ctx) for name, cls in NODE_TYPES.items()}
