"""The emulator's core: devices, sessions, gateway sub-device sessions, and what flows between them.

Sessions call in here for everything that is more than one connection's business; rule nodes reach
the rest of the emulator only through the NodeContext methods below.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from devstack.tb_emulator.codec import MQTT_5
from devstack.tb_emulator.convert import dumps
from devstack.tb_emulator.devices import Device, DeviceRegistry, DeviceSpec
from devstack.tb_emulator.faults import Faults
from devstack.tb_emulator.rpc import RpcRequest, RpcResult, RpcService
from devstack.tb_emulator.rule_engine import MsgType, RuleEngine, TbMsg
from devstack.tb_emulator.session import RC_SESSION_TIMEOUT, MqttSession
from devstack.tb_emulator.topics import Sub
from devstack.tb_emulator.webhook import HttpPoster, HttpResult

log = structlog.get_logger("tb_emulator")


@dataclass(frozen=True, slots=True)
class HubSettings:
    max_packet_bytes: int = 65_536  # NETTY_MAX_PAYLOAD_SIZE
    client_rpc_timeout_s: float = 60.0  # CLIENT_SIDE_RPC_TIMEOUT
    delivery_timeout_s: float = 10.0  # MQTT_TIMEOUT: wait for a device's PUBACK of an RPC
    rpc_max_retries: int = 5  # ACTORS_RPC_MAX_RETRIES
    max_inflight_messages: int = 100  # MQTT_MSG_QUEUE_SIZE_PER_DEVICE_LIMIT, told in getSessionLimits
    session_inactivity_timeout_s: float = 600.0  # TB_TRANSPORT_SESSIONS_INACTIVITY_TIMEOUT
    # What the in-memory views keep (the emulator's own limits, not ThingsBoard's)
    history_per_device: int = 10_000  # telemetry groups per device for /timeseries
    rpc_records_kept: int = 100_000  # server-side RPC records for /api/rpc
    webhook_calls_kept: int = 1_000  # REST node calls for /api/webhook/calls
    # The REST node's connection pool, per origin, as ThingsBoard's Reactor Netty pool defaults it on
    # a box of up to 8 cores (TB_RE_HTTP_CLIENT_POOL_MAX_CONNECTIONS unset): 16 keep-alive
    # connections, 2 x that many requests waiting for one (more fail at once), 45 s to get one,
    # 30 s to connect. The node's readTimeoutMs bounds each request once it is on the wire.
    webhook_connections: int = 16
    webhook_pending_max: int = 32
    webhook_acquire_timeout_s: float = 45.0
    webhook_connect_timeout_s: float = 30.0
    # The rule-engine queue's processing strategy: 0 = SKIP_ALL_FAILURES (ThingsBoard's default for
    # Main), N = RETRY_FAILED_AND_TIMED_OUT with N retries, queue_retry_pause_s apart.
    queue_retries: int = 0
    queue_retry_pause_s: float = 3.0


class SubDeviceSession:
    """A gateway sub-device's session: RPC and attribute updates go out on the gateway's connection."""

    def __init__(self, gateway: MqttSession, device: Device) -> None:
        self.gateway = gateway
        self.device = device
        self.last_activity = gateway.last_activity

    def send_rpc(self, device: Device, request: RpcRequest) -> None:
        payload = {
            "device": device.name,
            "data": {"id": request.request_id, "method": request.method, "params": request.params},
        }
        self.gateway.publish(
            "v1/gateway/rpc", dumps(payload).encode(), self.gateway.sub_qos("v1/gateway/rpc")
        )
        # ThingsBoard marks a gateway RPC SENT on write and never DELIVERED (PUBACK not tracked).
        device.rpc.on_written(request, 1)

    def send_attributes(self, values: dict[str, Any]) -> None:
        payload = dumps({"device": self.device.name, "data": values}).encode()
        self.gateway.publish("v1/gateway/attributes", payload, self.gateway.sub_qos("v1/gateway/attributes"))


class Hub:
    def __init__(self, settings: HubSettings, specs: list[DeviceSpec]) -> None:
        self.settings = settings
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.rpc = RpcService(
            delivery_timeout_s=settings.delivery_timeout_s,
            max_retries=settings.rpc_max_retries,
            on_status=self._rpc_status_msg,
            keep_records=settings.rpc_records_kept,
        )
        self.registry = DeviceRegistry(self.rpc.actor, settings.history_per_device)
        for spec in specs:
            self.registry.add(spec)
        self.engine: RuleEngine | None = None
        self.http_poster = HttpPoster(
            connections=settings.webhook_connections,
            pending_max=settings.webhook_pending_max,
            acquire_timeout_s=settings.webhook_acquire_timeout_s,
            connect_timeout_s=settings.webhook_connect_timeout_s,
            keep_calls=settings.webhook_calls_kept,
        )
        self.sessions: dict[str, MqttSession] = {}
        # gateway session id -> sub-device name -> sub-session
        self.sub_sessions: dict[str, dict[str, SubDeviceSession]] = {}
        # device name -> sessions subscribed to its attribute updates
        self.attr_subs: dict[str, list[MqttSession]] = {}
        # server-side RPCs asked over the HTTP side: request uuid -> the caller's future
        self.rest_rpc_waiters: dict[str, asyncio.Future[RpcResult]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ clock and loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def loop_time(self) -> float:
        return self.loop.time()

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ sessions

    def on_session_open(self, session: MqttSession) -> None:
        device = session.device
        assert device is not None
        self.sessions[session.id] = session
        self.stats["connects"] += 1
        device.last_activity_ms = self.now_ms()
        log.info(
            "device connected",
            device=device.name,
            gateway=device.is_gateway,
            session=session.id,
            version=session.version,
        )

    def on_session_closed(self, session: MqttSession) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        device = session.device
        assert device is not None
        device.rpc.unsubscribe(session)
        subs = self.attr_subs.get(device.name)
        if subs and session in subs:
            subs.remove(session)
        # AbstractGatewaySessionHandler.onDevicesDisconnect: every sub-device session goes with it
        for sub in self.sub_sessions.pop(session.id, {}).values():
            sub.device.rpc.unsubscribe(sub)
        log.info("device disconnected", device=device.name, session=session.id)

    def on_subscribe(self, session: MqttSession, kind: Sub) -> None:
        device = session.device
        assert device is not None
        if kind is Sub.RPC:
            device.rpc.subscribe(session)
        elif kind is Sub.ATTRIBUTES:
            subs = self.attr_subs.setdefault(device.name, [])
            if session not in subs:
                subs.append(session)

    def on_unsubscribe(self, session: MqttSession, kind: Sub) -> None:
        device = session.device
        assert device is not None
        if kind is Sub.RPC:
            device.rpc.unsubscribe(session)
        elif kind is Sub.ATTRIBUTES and session in self.attr_subs.get(device.name, []):
            self.attr_subs[device.name].remove(session)

    def on_activity(self, session: MqttSession) -> None:
        """A PINGREQ: activity of the device, and of its sub-devices if it overwrites their activity."""
        device = session.device
        if device is None:
            return
        device.last_activity_ms = self.now_ms()
        if device.overwrite_activity_time:
            now = self.loop_time()
            for sub in self.sub_sessions.get(session.id, {}).values():
                sub.last_activity = now

    # ------------------------------------------------------------ gateway sub-devices

    def connect_sub_device(
        self, gateway: MqttSession, name: str, type_: str, *, implicit: bool = False
    ) -> SubDeviceSession:
        """The sub-device's session on this gateway; a new one gets the device's pending RPCs.

        Called while the gateway's PUBLISH is processed, so the pending RPCs go out after its PUBACK.
        An already connected sub-device is not re-subscribed (no re-send), as in ThingsBoard.
        """
        gw_device = gateway.device
        assert gw_device is not None
        subs = self.sub_sessions.setdefault(gateway.id, {})
        sub = subs.get(name)
        if sub is None:
            device = self.registry.find_or_create_sub_device(name, type_, gw_device)
            sub = SubDeviceSession(gateway, device)
            subs[name] = sub
            self.stats["sub_device_connects"] += 1
            log.info("sub-device connected", device=name, gateway=gw_device.name, implicit=implicit)
            # A sub-device session subscribes to attributes and RPC at once (gateway session handler)
            device.rpc.sinks.append(sub)
            gateway.defer(lambda: self.push_pending_rpc(sub))
        sub.last_activity = self.loop_time()
        sub.device.last_activity_ms = self.now_ms()
        return sub

    def push_pending_rpc(self, sub: SubDeviceSession) -> None:
        if sub.device.rpc.sinks and sub in sub.device.rpc.sinks:
            sub.device.rpc.push_pending([sub])

    def disconnect_sub_device(self, gateway: MqttSession, name: str) -> None:
        sub = self.sub_sessions.get(gateway.id, {}).pop(name, None)
        if sub is not None:
            sub.device.rpc.unsubscribe(sub)
            log.info("sub-device disconnected", device=name)

    # ------------------------------------------------------------ device API into the rule engine

    def post_telemetry(self, device: Device, groups: list[tuple[int, dict[str, Any]]]) -> None:
        engine = self.engine
        assert engine is not None
        for ts, values in groups:
            self.stats["telemetry_msgs"] += 1
            metadata = {"deviceName": device.name, "deviceType": device.type, "ts": str(ts)}
            engine.submit(TbMsg(MsgType.POST_TELEMETRY_REQUEST, device, dumps(values), metadata, values))

    def post_attributes(self, device: Device, values: dict[str, Any]) -> None:
        assert self.engine is not None
        self.stats["attribute_msgs"] += 1
        metadata = {"deviceName": device.name, "deviceType": device.type, "notifyDevice": "false"}
        self.engine.submit(TbMsg(MsgType.POST_ATTRIBUTES_REQUEST, device, dumps(values), metadata, values))

    def client_rpc(self, session: MqttSession, request_id: int, method: str, params: Any) -> None:
        device = session.device
        assert device is not None
        assert self.engine is not None
        self.stats["client_rpcs"] += 1
        if method == "getSessionLimits":
            self._reply(session, request_id, dumps(self._session_limits(device)))
            return
        timer = self.loop.call_later(
            self.settings.client_rpc_timeout_s, self._client_rpc_timeout, session, request_id
        )
        old = session.client_rpc_timers.pop(request_id, None)
        if old is not None:
            old.cancel()
        session.client_rpc_timers[request_id] = timer
        metadata = {
            "deviceName": device.name,
            "deviceType": device.type,
            "requestId": str(request_id),
            "serviceId": "tb-emulator",
            "sessionId": session.id,
        }
        data = {"method": method, "params": params}
        self.engine.submit(TbMsg(MsgType.TO_SERVER_RPC_REQUEST, device, dumps(data), metadata, data))

    def _session_limits(self, device: Device) -> dict[str, Any]:
        # MqttTransportHandler.onGetSessionLimitsRpc with the default tenant profile (no rate limits)
        no_limits = {"messages": None, "telemetryMessages": None, "telemetryDataPoints": None}
        limits: dict[str, Any] = {
            "maxPayloadSize": self.settings.max_packet_bytes,
            "maxInflightMessages": self.settings.max_inflight_messages,
            "rateLimits": no_limits,
        }
        if device.is_gateway:
            limits["gatewayRateLimits"] = dict(no_limits)
        return limits

    def _client_rpc_timeout(self, session: MqttSession, request_id: int) -> None:
        if session.client_rpc_timers.pop(request_id, None) is not None:
            self.stats["client_rpc_timeouts"] += 1
            self._publish_response(session, request_id, dumps({"error": "timeout"}))

    def _reply(self, session: MqttSession, request_id: int, payload: str) -> None:
        timer = session.client_rpc_timers.pop(request_id, None)
        if timer is not None:
            timer.cancel()
        self._publish_response(session, request_id, payload)

    def _publish_response(self, session: MqttSession, request_id: int, payload: str) -> None:
        topic = f"v1/devices/me/rpc/response/{request_id}"
        session.publish(topic, payload.encode(), session.sub_qos("v1/devices/me/rpc/response/+"))

    def answer_attribute_request(
        self,
        session: MqttSession,
        request_id: int,
        client_keys: set[str] | None,
        shared_keys: set[str] | None,
    ) -> None:
        device = session.device
        assert device is not None
        body: dict[str, Any] = {}
        every = client_keys is None and shared_keys is None
        for label, store, keys in (
            ("client", device.client_attributes, client_keys),
            ("shared", device.shared_attributes, shared_keys),
        ):
            if keys is None and not every:
                continue
            picked = {k: v for k, v in store.items() if keys is None or k in keys}
            if picked:
                body[label] = picked
        topic = f"v1/devices/me/attributes/response/{request_id}"
        session.publish(topic, dumps(body).encode(), session.sub_qos("v1/devices/me/attributes/response/+"))

    def answer_gateway_attribute_request(
        self,
        gateway: MqttSession,
        device: Device,
        request_id: int,
        client: bool,
        keys: list[str],
        single: bool,
    ) -> None:
        store = device.client_attributes if client else device.shared_attributes
        body: dict[str, Any] = {"id": request_id, "device": device.name}
        if single:
            if keys[0] in store:
                body["value"] = store[keys[0]]
        else:
            body["values"] = {k: store[k] for k in keys if k in store}
        topic = "v1/gateway/attributes/response"
        gateway.publish(topic, dumps(body).encode(), gateway.sub_qos(topic))

    # ------------------------------------------------------------ NodeContext

    def device_by_name(self, name: str) -> Device | None:
        return self.registry.by_name.get(name)

    def submit_rpc(self, device: Device, request: RpcRequest) -> None:
        self.stats["server_rpcs"] += 1
        waiter = self.rest_rpc_waiters.get(request.uuid)
        if waiter is not None:
            request.callbacks.append(lambda result: None if waiter.done() else waiter.set_result(result))
        device.rpc.submit(request)

    def reply_to_client_rpc(self, session_id: str, request_id: int, payload: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            log.info("client rpc reply for a closed session", session=session_id, request_id=request_id)
            return False
        self._reply(session, request_id, payload)
        return True

    def save_timeseries(self, device: Device, ts: int, values: dict[str, Any]) -> None:
        latest = device.latest
        for key, value in values.items():
            current = latest.get(key)
            if current is None or current[0] <= ts:
                latest[key] = (ts, value)
        device.history.append((ts, values))

    def save_attributes(self, device: Device, scope: str, values: dict[str, Any], notify: bool) -> None:
        if scope == "CLIENT_SCOPE":
            device.client_attributes.update(values)
        elif scope == "SERVER_SCOPE":
            device.server_attributes.update(values)
        else:
            self.update_shared_attributes(device, values, notify=notify)

    async def http(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult:
        return await self.http_poster.request(method, url, headers, body, timeout_s)

    # ------------------------------------------------------------ shared attributes (HTTP side)

    def update_shared_attributes(
        self, device: Device, values: dict[str, Any], *, notify: bool = True
    ) -> None:
        device.shared_attributes.update(values)
        if not notify:
            return
        payload = dumps(values).encode()
        for session in self.attr_subs.get(device.name, []):
            session.publish("v1/devices/me/attributes", payload, session.sub_qos("v1/devices/me/attributes"))
        for subs in self.sub_sessions.values():
            sub = subs.get(device.name)
            if sub is not None:
                sub.send_attributes(values)

    # ------------------------------------------------------------ persistent RPC status messages

    def _rpc_status_msg(self, device: Device, request: RpcRequest) -> None:
        if self.engine is None:
            return
        data = {
            "id": request.uuid,
            "deviceId": device.id,
            "expirationTime": request.expiration_ms,
            "request": {
                "id": request.uuid,
                "oneway": request.oneway,
                "body": {"method": request.method, "params": request.params},
            },
            "response": request.response,
            "status": request.status.value,
            "additionalInfo": request.additional_info,
        }
        metadata = {"deviceName": device.name, "deviceType": device.type}
        self.engine.submit(TbMsg(f"RPC_{request.status.value}", device, dumps(data), metadata, data))

    # ------------------------------------------------------------ faults

    def cut_sessions(self, device_name: str) -> int:
        cut = [
            s for s in list(self.sessions.values()) if s.device is not None and s.device.name == device_name
        ]
        for session in cut:
            session.abort()
        return len(cut)

    def redeliver_pending(self, device_name: str) -> int:
        device = self.registry.by_name.get(device_name)
        return device.rpc.push_pending() if device is not None else 0

    def expire_idle_sessions(self) -> None:
        """Close sessions idle longer than the inactivity timeout (DeviceActorMessageProcessor)."""
        limit = self.settings.session_inactivity_timeout_s
        now = self.loop_time()
        for session in list(self.sessions.values()):
            if now - session.last_activity > limit:
                log.info("closing inactive session", device=session.device.name if session.device else None)
                session.close(RC_SESSION_TIMEOUT)
        for gateway_id, subs in list(self.sub_sessions.items()):
            for name, sub in list(subs.items()):
                if now - sub.last_activity > limit:
                    subs.pop(name)
                    sub.device.rpc.unsubscribe(sub)
                    log.info("closing inactive sub-device session", device=name, gateway=gateway_id)
                    if sub.gateway.version == MQTT_5:
                        # AbstractGatewaySessionHandler.closeDeviceSession tells an MQTT 5 gateway why
                        payload = dumps({"device": name, "reason": RC_SESSION_TIMEOUT}).encode()
                        sub.gateway.publish("v1/gateway/disconnect", payload, 1)

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            session.close(None)
        for task in list(self._tasks):
            task.cancel()
        await self.http_poster.close()
