"""The emulator's core: devices, sessions, gateway sub-device sessions, and what flows between them.

Sessions call in here for everything that is more than one connection's business; rule nodes reach
the rest of the emulator only through the NodeContext methods below.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from cloud.mqtt.codec import MQTT_5
from devstack.tb_emulator.convert import DEFAULT_JSON, JsonSettings, dumps
from devstack.tb_emulator.devices import Device, DeviceRegistry, DevicesFile, DevicesFileError
from devstack.tb_emulator.faults import Faults
from devstack.tb_emulator.queues import DEFAULT_QUEUES, QueueConfig, RuleEngineQueues
from devstack.tb_emulator.rpc import DeviceRpc, RpcRequest, RpcResult, RpcService
from devstack.tb_emulator.rule_engine import ChainError, MsgType, QueueMsg, RuleEngine, TbMsg, process
from devstack.tb_emulator.session import RC_SESSION_TAKEN_OVER, RC_SESSION_TIMEOUT, MqttSession
from devstack.tb_emulator.topics import Sub
from devstack.tb_emulator.transport_queues import (
    DEFAULT_TRANSPORT_QUEUES,
    TransportQueues,
    TransportQueueSettings,
)
from devstack.tb_emulator.versions import DEFAULT_TB_VERSION, TbVersion
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
    # TB_QUEUE_TRANSPORT_MAX_REQUEST_TIMEOUT: a transport API request left unanswered (a sub-device
    # ThingsBoard cannot create) fails after this (gateway_api)
    transport_api_timeout_s: float = 10.0
    # ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE (thingsboard.yml, default 1): one session more than
    # this evicts the device's oldest session (Hub.session_opened)
    max_concurrent_sessions_per_device: int = 1
    # Whose rule node versions, configuration schemas and upgrades-on-save to follow (versions.py)
    thingsboard_version: TbVersion = DEFAULT_TB_VERSION
    # thingsboard.yml transport.json: JSON_TYPE_CAST_ENABLED, JSON_MAX_STRING_VALUE_LENGTH
    json: JsonSettings = DEFAULT_JSON
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
    # The rule-engine queues by name (queues.py): a fresh install's three, or those plus others
    queues: tuple[QueueConfig, ...] = DEFAULT_QUEUES
    # The core and transport notifications queues on the RPC path (transport_queues.py)
    transport_queues: TransportQueueSettings = DEFAULT_TRANSPORT_QUEUES


class SubDeviceSession:
    """A gateway sub-device's session: RPC and attribute updates go out on the gateway's connection."""

    def __init__(self, gateway: MqttSession, device: Device) -> None:
        self.gateway = gateway
        self.device = device
        self.last_activity = gateway.last_activity

    def send_rpc(self, actor: DeviceRpc, request: RpcRequest) -> None:
        payload = {
            "device": actor.device_name,
            "data": {"id": request.request_id, "method": request.method, "params": request.params},
        }
        self.gateway.publish(
            "v1/gateway/rpc", dumps(payload).encode(), self.gateway.sub_qos("v1/gateway/rpc")
        )
        # ThingsBoard marks a gateway RPC SENT on write and never DELIVERED (PUBACK not tracked).
        actor.on_written(request, 1)

    def send_attributes(self, values: dict[str, Any]) -> None:
        payload = dumps({"device": self.device.name, "data": values}).encode()
        self.gateway.publish("v1/gateway/attributes", payload, self.gateway.sub_qos("v1/gateway/attributes"))


class Hub:
    def __init__(self, settings: HubSettings, fleet: DevicesFile) -> None:
        self.settings = settings
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.transport_queues = TransportQueues(settings.transport_queues)
        self.rpc = RpcService(
            delivery_timeout_s=settings.delivery_timeout_s,
            to_transport=self.transport_queues.to_transport,
            max_retries=settings.rpc_max_retries,
            on_status=self._rpc_status_msg,
            keep_records=settings.rpc_records_kept,
        )
        self.registry = DeviceRegistry(self.rpc.actor, settings.history_per_device, fleet.profiles)
        for spec in fleet.devices:
            self.registry.add(spec)
        self.queues: RuleEngineQueues[QueueMsg] = RuleEngineQueues(settings.queues, process)
        unknown = sorted(
            f"{p.name} -> {p.queue}"
            for p in self.registry.profiles.values()
            if p.queue not in (None, *self.queues.by_name)
        )
        if unknown:
            # thingsboard/thingsboard dao/src/main/java/org/thingsboard/server/dao/service/validator/
            # DeviceProfileDataValidator.java @dfe65d5 refuses to save such a profile
            raise DevicesFileError(
                f"Device profile is referencing to non-existent queue! ({', '.join(unknown)})"
            )
        # Rule chains by ruleChain.name; messages of a profile without a default rule chain go to the root
        self.chains: dict[str, RuleEngine] = {}
        self.root_chain_name = ""
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
        # device id -> its sessions, oldest first (direct connections and gateway sub-device sessions)
        self.device_sessions: dict[str, list[MqttSession | SubDeviceSession]] = {}
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
        self.session_opened(device, session)
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
        self._session_gone(device, session)
        device.rpc.unsubscribe(session)
        subs = self.attr_subs.get(device.name)
        if subs and session in subs:
            subs.remove(session)
        # AbstractGatewaySessionHandler.onDevicesDisconnect: every sub-device session goes with it
        for sub in self.sub_sessions.pop(session.id, {}).values():
            self._session_gone(sub.device, sub)
            sub.device.rpc.unsubscribe(sub)
        log.info("device disconnected", device=device.name, session=session.id)

    def session_opened(self, device: Device, session: MqttSession | SubDeviceSession) -> None:
        """The device actor's SessionEvent.OPEN: one session too many evicts the device's oldest.

        thingsboard/thingsboard application/src/main/java/org/thingsboard/server/actors/device/
        DeviceActorMessageProcessor.java @dfe65d5 (same at v4.3.0.1): ``sessions`` is a
        LinkedHashMapRemoveEldest sized ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE, so the put of a new
        session removes the eldest by insertion order and notifyTransportAboutClosedSession
        MaxSessionsLimit drops its attribute and RPC subscriptions and tells its transport to close
        it. A gateway's sub-device session is a session of the sub-device (its own session id), so
        it counts, and it evicts or is evicted like a direct connection.
        """
        sessions = self.device_sessions.setdefault(device.id, [])
        sessions.append(session)
        while len(sessions) > self.settings.max_concurrent_sessions_per_device:
            self._evict(device, sessions.pop(0))

    def _session_gone(self, device: Device, session: MqttSession | SubDeviceSession) -> None:
        sessions = self.device_sessions.get(device.id)
        if sessions and session in sessions:
            sessions.remove(session)
            if not sessions:
                del self.device_sessions[device.id]

    def _evict(self, device: Device, session: MqttSession | SubDeviceSession) -> None:
        """Close a session the device actor evicted (MAX_CONCURRENT_SESSIONS_LIMIT_REACHED)."""
        self.stats["sessions_evicted"] += 1
        if isinstance(session, SubDeviceSession):
            # AbstractGatewayDeviceSessionContext.onRemoteSessionCloseCommand @dfe65d5: the gateway
            # session forgets the sub-device (parent.deregisterSession) without telling the gateway;
            # the gateway's next message for it opens a new sub-device session.
            gateway = session.gateway
            log.info("sub-device session evicted", device=device.name, gateway_session=gateway.id)
            self.sub_sessions.get(gateway.id, {}).pop(device.name, None)
            device.rpc.unsubscribe(session)
            return
        # MqttTransportHandler.onRemoteSessionCloseCommand @dfe65d5: the transport deregisters the
        # session at once (answers meant for it are dropped) and closes the channel: MQTT 5 gets
        # DISCONNECT 0x8E (SESSION_TAKEN_OVER) first, MQTT 3.1.1 just the TCP close. The channel's
        # doDisconnect then closes the sub-device sessions of a gateway.
        log.info("session evicted (max concurrent sessions)", device=device.name, session=session.id)
        session.close(RC_SESSION_TAKEN_OVER)
        self.on_session_closed(session)

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
            device, created = self.registry.find_or_create_sub_device(name, type_, gw_device)
            if created:
                self._entity_created(device, gw_device)
            sub = SubDeviceSession(gateway, device)
            subs[name] = sub
            self.stats["sub_device_connects"] += 1
            self.session_opened(device, sub)
            log.info("sub-device connected", device=name, gateway=gw_device.name, implicit=implicit)
            # A sub-device session subscribes to attributes and RPC at once (gateway session handler)
            device.rpc.sinks.append(sub)
            gateway.defer(lambda: self.push_pending_rpc(sub))
        sub.last_activity = self.loop_time()
        sub.device.last_activity_ms = self.now_ms()
        return sub

    def _entity_created(self, device: Device, gateway: Device) -> None:
        """DefaultTransportApiService.pushCreatedEvent: ENTITY_CREATED, the device as data, into the
        rule engine of the new device's profile."""
        self.stats["devices_created_by_gateways"] += 1
        log.info("device created by gateway", device=device.name, type=device.type, gateway=gateway.name)
        data = {
            "id": {"entityType": "DEVICE", "id": device.id},
            "name": device.name,
            "type": device.type,
            "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": self.registry.profile_of(device).id},
            "additionalInfo": {"lastConnectedGateway": gateway.id},
        }
        metadata = {"gatewayId": gateway.id}
        self.push_to_rule_engine(TbMsg(MsgType.ENTITY_CREATED, device, dumps(data), metadata, data))

    def push_pending_rpc(self, sub: SubDeviceSession) -> None:
        if sub.device.rpc.sinks and sub in sub.device.rpc.sinks:
            sub.device.rpc.push_pending([sub])

    def disconnect_sub_device(self, gateway: MqttSession, name: str) -> None:
        sub = self.sub_sessions.get(gateway.id, {}).pop(name, None)
        if sub is not None:
            self._session_gone(sub.device, sub)
            sub.device.rpc.unsubscribe(sub)
            log.info("sub-device disconnected", device=name)

    # ------------------------------------------------------------ device API into the rule engine

    @property
    def root_chain(self) -> RuleEngine:
        return self.chains[self.root_chain_name]

    def set_chains(self, chains: list[RuleEngine]) -> None:
        """The tenant's rule chains; exactly one is the root (ruleChain.root), or the only one loaded.

        Raises ChainError if the root is ambiguous or a profile names a chain that is not loaded."""
        by_name = {chain.name: chain for chain in chains}
        if len(by_name) != len(chains):
            raise ChainError("two rule chains have the same name")
        roots = [chain.name for chain in chains if chain.root]
        if len(roots) > 1:
            raise ChainError(f"more than one root rule chain: {', '.join(roots)}")
        if not roots and len(chains) != 1:
            raise ChainError("no root rule chain: mark one (ruleChain.root) or load just one")
        missing = sorted(
            f"{p.name} -> {p.rule_chain}"
            for p in self.registry.profiles.values()
            if p.rule_chain is not None and p.rule_chain not in by_name
        )
        if missing:
            raise ChainError(f"device profiles name rule chains that are not loaded: {', '.join(missing)}")
        self.chains = by_name
        self.root_chain_name = roots[0] if roots else chains[0].name
        for chain in chains:
            chain.enqueue = self.queues.put

    def push_to_rule_engine(self, msg: TbMsg) -> None:
        """Every message enters the rule engine here: the chain and queue of the originator's profile
        (DefaultTbClusterService.pushMsgToRuleEngine / transformMsg, and DefaultTransportService for
        transport messages, which reads the same two profile fields: thingsboard/thingsboard
        application/.../service/queue/DefaultTbClusterService.java @dfe65d5)."""
        profile = self.registry.profile_of(msg.originator)
        chain = self.chains[profile.rule_chain or self.root_chain_name]
        self.queues.put(QueueMsg(msg, chain, profile.queue))

    def rpc_response(self, device: Device, request_id: int, payload: str) -> None:
        """A device's RPC reply (for a sub-device, its gateway's): DefaultTransportService.process
        -> sendToDeviceActor, so the device actor takes it when the core queue's consumer polls it."""
        self.transport_queues.to_device_actor(
            device.id, functools.partial(device.rpc.on_response, request_id, payload)
        )

    def post_telemetry(self, device: Device, groups: list[tuple[int, dict[str, Any]]]) -> None:
        """DefaultTransportService: one message per ts group, its converted values as the data. Those
        values are also the tree Gson reads back from the JSON ThingsBoard writes for them
        (JsonUtils.getJsonObject: a DOUBLE_V is written, and read, as Double.toString)."""
        for ts, values in groups:
            self.stats["telemetry_msgs"] += 1
            metadata = {"deviceName": device.name, "deviceType": device.type, "ts": str(ts)}
            self.push_to_rule_engine(
                TbMsg(
                    MsgType.POST_TELEMETRY_REQUEST, device, dumps(values), metadata, values, gson_tree=values
                )
            )

    def post_attributes(self, device: Device, values: dict[str, Any]) -> None:
        self.stats["attribute_msgs"] += 1
        metadata = {"deviceName": device.name, "deviceType": device.type, "notifyDevice": "false"}
        self.push_to_rule_engine(
            TbMsg(MsgType.POST_ATTRIBUTES_REQUEST, device, dumps(values), metadata, values, gson_tree=values)
        )

    def client_rpc(self, session: MqttSession, request_id: int, method: str, params: Any) -> None:
        device = session.device
        assert device is not None
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
        self.push_to_rule_engine(TbMsg(MsgType.TO_SERVER_RPC_REQUEST, device, dumps(data), metadata, data))

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
        self, gateway: MqttSession, device: Device, request_id: int, client: bool, keys: set[str]
    ) -> None:
        """The device actor's answer (DeviceActorMessageProcessor.handleGetAttributesRequest) as the
        gateway gets it (JsonConverter.getJsonObjectForGateway): the keys found in the requested scope,
        or, for no key at all, every client and every shared attribute; a scope that found exactly one
        attribute for a request of at most one key gives "value", else its attributes go into "values";
        nothing found gives neither (thingsboard/thingsboard application/.../actors/device/
        DeviceActorMessageProcessor.java, common/proto/.../adaptor/JsonConverter.java @dfe65d5)."""
        if keys:
            store = device.client_attributes if client else device.shared_attributes
            found = [{k: v for k, v in store.items() if k in keys}]
        else:
            found = [dict(device.client_attributes), dict(device.shared_attributes)]
        multiple = len(keys) > 1
        body: dict[str, Any] = {"id": request_id, "device": device.name}
        for values in found:
            if len(values) == 1 and not multiple:
                body["value"] = next(iter(values.values()))
            elif values:
                body.setdefault("values", {}).update(values)
        topic = "v1/gateway/attributes/response"
        gateway.publish(topic, dumps(body).encode(), gateway.sub_qos(topic))

    # ------------------------------------------------------------ NodeContext

    @property
    def json_settings(self) -> JsonSettings:
        return self.settings.json

    def device_by_name(self, name: str) -> Device | None:
        return self.registry.by_name.get(name)

    def submit_rpc(self, device: Device, request: RpcRequest) -> None:
        self.stats["server_rpcs"] += 1
        waiter = self.rest_rpc_waiters.get(request.uuid)
        if waiter is not None:
            request.callbacks.append(lambda result: None if waiter.done() else waiter.set_result(result))
        self.rpc.submit(device.rpc, request)

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
        if scope == "SHARED_SCOPE":  # the one scope a device subscribes to
            self.update_shared_attributes(device, values, notify=notify)
            return
        device.attributes(scope).update(values)
        now_ms = self.now_ms()
        device.attribute_ts.update(((scope, key), now_ms) for key in values)

    async def http(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult:
        return await self.http_poster.request(method, url, headers, body, timeout_s)

    # ------------------------------------------------------------ shared attributes (HTTP side)

    def update_shared_attributes(
        self, device: Device, values: dict[str, Any], *, notify: bool = True
    ) -> None:
        device.shared_attributes.update(values)
        now_ms = self.now_ms()
        device.attribute_ts.update((("SHARED_SCOPE", key), now_ms) for key in values)
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

    def _rpc_status_msg(self, request: RpcRequest) -> None:
        if not self.chains:
            return
        device = self.registry.by_name[request.device]
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
        self.push_to_rule_engine(TbMsg(f"RPC_{request.status.value}", device, dumps(data), metadata, data))

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
                    self._session_gone(sub.device, sub)
                    sub.device.rpc.unsubscribe(sub)
                    log.info("closing inactive sub-device session", device=name, gateway=gateway_id)
                    if sub.gateway.version == MQTT_5:
                        # AbstractGatewaySessionHandler.closeDeviceSession tells an MQTT 5 gateway why
                        payload = dumps({"device": name, "reason": RC_SESSION_TIMEOUT}).encode()
                        sub.gateway.publish("v1/gateway/disconnect", payload, 1)

    async def close(self) -> None:
        await self.queues.stop()
        await self.transport_queues.stop()
        for session in list(self.sessions.values()):
            session.close(None)
        for task in list(self._tasks):
            task.cancel()
        await self.http_poster.close()
