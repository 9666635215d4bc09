"""Server-side RPC as ThingsBoard runs it: the device actor and the rule engine's pending answer.

Device actor (DeviceActorMessageProcessor, ToDeviceRpcRequestMetadata; thingsboard/thingsboard
application/src/main/java/org/thingsboard/server/actors/device/ @dfe65d5, the same at v4.3.0.1):
request ids from 0, a pending map, an expiry timer per request, submit strategy BURST (ThingsBoard's
default ACTORS_RPC_SUBMIT_STRATEGY_TYPE: a new request goes to every RPC subscription at once, even
while older ones are pending), re-delivery of every pending request when a session (re)subscribes
(sendPendingRequests), one-way requests done once written, persistent RPC statuses. ``sent`` is
fixed when the request arrives (``!rpcSubscriptions.isEmpty()``, a final field of
ToDeviceRpcRequestMetadata): a re-send on re-subscribe never changes it, so a request that arrived
while the device had no session ends NO_ACTIVE_CONNECTION even if it was pushed to a later one.

Rule engine (DefaultTbRuleEngineRpcService, application/src/main/java/org/thingsboard/server/
service/rpc/ @dfe65d5): the caller's consumer waits per request uuid; the device actor's first
answer takes it, later ones are stale; if none comes it gets TIMEOUT one second after the
expiration time (scheduleTimeout). A request already expired on arrival gets no answer from the
device actor ("Ignoring message due to exp time reached"), so that TIMEOUT is the one it gets.

The emulator keeps a status history for lightweight RPCs too (ThingsBoard stores only persistent
ones) so tests and the demo can watch every request; ``persistent`` says which kind it was.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import structlog

from devstack.tb_emulator.convert import dumps

log = structlog.get_logger("tb_emulator.rpc")

# DefaultTbRuleEngineRpcService.scheduleTimeout: a caller's consumer gets TIMEOUT this long after the
# request's expiration time when the device actor has not answered by then.
RULE_ENGINE_RPC_GRACE_S = 1.0


class RpcError(StrEnum):
    """org.thingsboard.server.common.data.rpc.RpcError"""

    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    NO_ACTIVE_CONNECTION = "NO_ACTIVE_CONNECTION"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"


class RpcStatus(StrEnum):
    """org.thingsboard.server.common.data.rpc.RpcStatus"""

    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    SUCCESSFUL = "SUCCESSFUL"
    TIMEOUT = "TIMEOUT"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    DELETED = "DELETED"


@dataclass(slots=True)
class RpcResult:
    response: str | None = None
    error: RpcError | None = None


@dataclass(slots=True)
class RpcRequest:
    uuid: str
    method: str
    params: Any
    oneway: bool
    persistent: bool
    expiration_ms: int
    retries: int | None = None
    additional_info: Any = None
    device: str = ""
    request_id: int = -1
    created_ms: int = 0
    sent: bool = False
    done: bool = False
    delivery_retries: int = 0
    status: RpcStatus = RpcStatus.QUEUED
    history: list[tuple[str, int]] = field(default_factory=list)
    response: str | None = None
    error: str | None = None
    callbacks: list[Callable[[RpcResult], None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.uuid,
            "device": self.device,
            "requestId": self.request_id,
            "method": self.method,
            "params": self.params,
            "oneway": self.oneway,
            "persistent": self.persistent,
            "createdTime": self.created_ms,
            "expirationTime": self.expiration_ms,
            "status": self.status.value,
            "history": [{"status": s, "ts": ts} for s, ts in self.history],
            "response": self.response,
            "error": self.error,
        }


class RpcSink(Protocol):
    """A session subscribed to RPC for a device: a direct MQTT session or a gateway sub-device session."""

    def send_rpc(self, actor: DeviceRpc, request: RpcRequest) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


class RpcService:
    """Every device's RPC actor, the rule engine's waiting consumers, and the records the HTTP side shows."""

    def __init__(
        self,
        *,
        delivery_timeout_s: float,
        max_retries: int,
        to_transport: Callable[[Callable[[], None]], None],
        on_status: Callable[[RpcRequest], None] | None = None,
        keep_records: int = 100_000,
    ) -> None:
        """``to_transport``: how the device actor's sendToTransport reaches a session (in ThingsBoard,
        the transport notifications queue: transport_queues.py)."""
        self.delivery_timeout_s = delivery_timeout_s
        self.to_transport = to_transport
        self.max_retries = max_retries
        self.on_status = on_status
        self.records: OrderedDict[str, RpcRequest] = OrderedDict()
        self._keep = keep_records
        # request uuid -> the consumers waiting for its first answer, and their TIMEOUT timer
        self._waiting: dict[str, tuple[list[Callable[[RpcResult], None]], asyncio.TimerHandle]] = {}

    def actor(self, device_name: str) -> DeviceRpc:
        return DeviceRpc(self, device_name)

    def record(self, request: RpcRequest) -> None:
        self.records[request.uuid] = request
        while len(self.records) > self._keep:
            self.records.popitem(last=False)

    def submit(self, actor: DeviceRpc, request: RpcRequest) -> None:
        """DefaultTbRuleEngineRpcService.forwardRpcRequestToDeviceActor: the request's callbacks
        wait for the first answer, TIMEOUT if none by expiration + RULE_ENGINE_RPC_GRACE_S."""
        callbacks, request.callbacks = request.callbacks, []
        delay_s = max(0, request.expiration_ms - now_ms()) / 1000 + RULE_ENGINE_RPC_GRACE_S
        timer = asyncio.get_running_loop().call_later(
            delay_s, self.answer, request.uuid, RpcResult(error=RpcError.TIMEOUT)
        )
        self._waiting[request.uuid] = (callbacks, timer)
        actor.submit(request)

    def answer(self, request_uuid: str, result: RpcResult) -> None:
        """processRpcResponseFromDevice: the first answer goes to the consumers, later ones are stale."""
        entry = self._waiting.pop(request_uuid, None)
        if entry is None:
            log.debug("unknown or stale rpc answer", rpc=request_uuid)
            return
        callbacks, timer = entry
        timer.cancel()
        for callback in callbacks:
            callback(result)


class DeviceRpc:
    def __init__(self, service: RpcService, device_name: str) -> None:
        self.service = service
        self.device_name = device_name
        self._seq = 0
        self.pending: dict[int, RpcRequest] = {}
        self.sinks: list[RpcSink] = []

    @property
    def session_count(self) -> int:
        return len(self.sinks)

    # ------------------------------------------------------------ requests in

    def submit(self, request: RpcRequest) -> None:
        request.device = self.device_name
        request.created_ms = now_ms()
        self.service.record(request)
        timeout_ms = request.expiration_ms - request.created_ms
        if timeout_ms <= 0:
            # processRpcRequest: "Ignoring message due to exp time reached": no answer at all (the
            # rule engine's timer answers TIMEOUT)
            self._set_status(request, RpcStatus.EXPIRED)
            request.done = True
            return
        request.request_id = self._seq
        self._seq += 1
        self._set_status(request, RpcStatus.QUEUED)
        # BURST: sent to every subscription now, whatever else is pending; ``sent`` stays as it is now
        request.sent = bool(self.sinks)
        for sink in list(self.sinks):
            self._send_to_transport(sink, request)
        if request.persistent:
            # The caller gets the rpc id at once; the device's answer only updates the record.
            self._finish(request, RpcResult(response=dumps({"rpcId": request.uuid})), keep_open=True)
        if not request.persistent and request.oneway and request.sent:
            self._finish(request, RpcResult(response=None))
            return
        self.pending[request.request_id] = request
        loop = asyncio.get_running_loop()
        request.timer = loop.call_later(timeout_ms / 1000, self._expire, request)

    def _expire(self, request: RpcRequest) -> None:
        """processServerSideRpcTimeout: only a request still pending is answered."""
        if self.pending.pop(request.request_id, None) is None or request.done:
            return
        if request.persistent:
            self._set_status(request, RpcStatus.EXPIRED)
        else:
            self._set_status(request, RpcStatus.TIMEOUT if request.sent else RpcStatus.EXPIRED)
        self._finish(
            request, RpcResult(error=RpcError.TIMEOUT if request.sent else RpcError.NO_ACTIVE_CONNECTION)
        )

    # ------------------------------------------------------------ sessions

    def subscribe(self, sink: RpcSink) -> None:
        """A session subscribed to RPC: push every pending request to it (sendPendingRequests)."""
        if sink not in self.sinks:
            self.sinks.append(sink)
        self.push_pending([sink])

    def unsubscribe(self, sink: RpcSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def push_pending(self, sinks: list[RpcSink] | None = None) -> int:
        """Re-send every pending request, as sendPendingRequests does on each re-subscribe (BURST,
        an ASYNC session: all of them, delivered or not). Returns how many. ``sent`` is not touched."""
        targets = self.sinks if sinks is None else sinks
        count = 0
        for request in list(self.pending.values()):
            for sink in targets:
                self._send_to_transport(sink, request)
            count += 1
            if request.oneway and targets and not request.persistent:
                self.pending.pop(request.request_id, None)
                self._finish(request, RpcResult(response=None))
        return count

    def _send_to_transport(self, sink: RpcSink, request: RpcRequest) -> None:
        """sendToTransport: the request reaches the session when the transport takes the notification."""
        self.service.to_transport(functools.partial(self._to_session, sink, request))

    def _to_session(self, sink: RpcSink, request: RpcRequest) -> None:
        # DefaultTransportService.processToTransportMsg: a session closed meanwhile is not in the
        # transport's sessions any more, and the notification is dropped
        if sink in self.sinks:
            sink.send_rpc(self, request)

    # ------------------------------------------------------------ transport feedback

    def on_written(self, request: RpcRequest, qos: int) -> None:
        if qos == 0:
            self.on_delivered(request)
        elif request.status in (RpcStatus.QUEUED, RpcStatus.TIMEOUT):
            self._set_status(request, RpcStatus.SENT)

    def on_delivered(self, request: RpcRequest) -> None:
        if request.done:
            return
        self._set_status(request, RpcStatus.DELIVERED)
        if request.oneway and request.persistent:
            self.pending.pop(request.request_id, None)
            self._set_status(request, RpcStatus.SUCCESSFUL)
            self._finish(request, RpcResult(response=None))

    def on_delivery_timeout(self, request: RpcRequest) -> None:
        """No PUBACK within the transport timeout: count a retry, FAILED once retries are used up."""
        if request.done or request.request_id not in self.pending:
            return
        limit = self.service.max_retries
        if request.retries is not None:
            limit = min(limit, request.retries)
        if request.delivery_retries >= limit:
            self.pending.pop(request.request_id, None)
            request.error = dumps(
                {
                    "error": "There was a Timeout and all retry attempts have been exhausted. "
                    f"Retry attempts set: {limit}"
                }
            )
            self._set_status(request, RpcStatus.FAILED)
            if request.persistent:
                self._finish(request, RpcResult(error=RpcError.TIMEOUT))
            # out of the pending map: the device actor never answers a lightweight caller now, the
            # rule engine's timer does (TIMEOUT), as in ThingsBoard
            return
        request.delivery_retries += 1
        self._set_status(request, RpcStatus.TIMEOUT)

    def on_response(self, request_id: int, payload: str) -> bool:
        """The device answered; an unknown id is stale and ignored (but still acknowledged)."""
        request = self.pending.pop(request_id, None)
        if request is None:
            log.debug("stale rpc response", device=self.device_name, request_id=request_id)
            return False
        request.response = payload
        self._set_status(request, RpcStatus.SUCCESSFUL)
        self._finish(request, RpcResult(response=payload))
        return True

    # ------------------------------------------------------------ internals

    def _set_status(self, request: RpcRequest, status: RpcStatus) -> None:
        request.status = status
        request.history.append((status.value, now_ms()))
        if request.persistent and self.service.on_status is not None:
            self.service.on_status(request)

    def _finish(self, request: RpcRequest, result: RpcResult, *, keep_open: bool = False) -> None:
        """The device actor's answer (processRpcResponseFromDeviceActor) to the waiting consumers."""
        if result.error is not None and request.error is None:
            request.error = result.error.value
        if not keep_open:
            request.done = True
            if request.timer is not None:
                request.timer.cancel()
        self.service.answer(request.uuid, result)


def new_request(
    *,
    method: str,
    params: Any,
    timeout_ms: int,
    oneway: bool = False,
    persistent: bool = False,
    expiration_ms: int | None = None,
    retries: int | None = None,
    request_uuid: str | None = None,
    additional_info: Any = None,
) -> RpcRequest:
    return RpcRequest(
        uuid=request_uuid or str(uuid.uuid4()),
        method=method,
        params=params,
        oneway=oneway,
        persistent=persistent,
        expiration_ms=expiration_ms if expiration_ms is not None else now_ms() + timeout_ms,
        retries=retries,
        additional_info=additional_info,
    )
