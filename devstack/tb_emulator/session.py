"""One MQTT connection as ThingsBoard's MqttTransportHandler treats it: auth, subscriptions, acks.

What the session owns: the protocol version, the authenticated device, its exact-string
subscriptions (ThingsBoard matches ``switch(topic)``, not MQTT wildcards), outgoing packet ids and
the RPC deliveries waiting for a PUBACK. What a PUBLISH means is decided by ``device_api``.

Packet ids as ThingsBoard numbers them: every publish it builds, QoS 0 too, takes the next value of
an int per session that never wraps (DeviceSessionCtx.nextMsgId; a gateway's sub-device sessions
take the gateway's: AbstractGatewayDeviceSessionContext.nextMsgId), and netty's MqttEncoder writes
its low 16 bits. So the 65,536th publish on a session goes out with packet id 0, and a client that
PUBACKs it gets the session closed: netty's MqttDecoder refuses a packet id 0 ("invalid messageId")
and MqttTransportHandler.channelRead closes with MALFORMED_PACKET (``codec.decode`` refuses it
here). RPC deliveries wait for their PUBACK under the full int (MqttTransportHandler.
sendToDeviceRpcRequest, rpcAwaitingAck), the PUBACK brings 16 bits: past the wrap none matches and
each QoS 1 RPC gets its TIMEOUT status.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, cast

import structlog

from cloud.mqtt import codec
from cloud.mqtt.codec import MQTT_5
from devstack.tb_emulator.convert import (
    AdaptorError,
    GatewayConversionError,
    GatewayError,
    UncaughtRuntimeError,
    dumps,
)
from devstack.tb_emulator.devices import Device, DeviceRegistry
from devstack.tb_emulator.faults import Faults
from devstack.tb_emulator.rpc import DeviceRpc, RpcRequest
from devstack.tb_emulator.topics import SUBSCRIBABLE, Sub

log = structlog.get_logger("tb_emulator.session")

# MQTT 5 reason codes ThingsBoard uses (MqttReasonCodes / ReturnCodeResolver)
RC_MALFORMED_PACKET = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_IMPLEMENTATION_SPECIFIC = 0x83
RC_UNSUPPORTED_PROTOCOL = 0x84
RC_CLIENT_ID_NOT_VALID = 0x85
RC_BAD_USERNAME_OR_PASSWORD = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_TOPIC_FILTER_INVALID = 0x8F
RC_PAYLOAD_FORMAT_INVALID = 0x99
RC_QOS_NOT_SUPPORTED = 0x9B
RC_ADMINISTRATIVE_ACTION = 0x98
RC_SERVER_SHUTTING_DOWN = 0x8B  # exceptionCaught: any exception a handler let escape
RC_SESSION_TIMEOUT = 0xA0  # ThingsBoard sends 0xA0 for an inactive session
RC_SESSION_TAKEN_OVER = 0x8E  # a newer session of the same device evicted this one
# MQTT 3.1.1 CONNACK return codes
V3_UNACCEPTABLE_PROTOCOL = 0x01
V3_IDENTIFIER_REJECTED = 0x02
V3_NOT_AUTHORIZED = 0x05
V3_SUBACK_FAILURE = 0x80

MAX_SUPPORTED_QOS = 1
NO_ACK = -1  # a publish handler's answer where ThingsBoard sends no PUBACK at all

# What a PUBLISH means (device_api.handle_publish): the PUBACK reason code, or NO_ACK
PublishHandler = Callable[["MqttSession", str, bytes], int]


class SessionLimits(Protocol):
    @property
    def max_packet_bytes(self) -> int: ...
    @property
    def delivery_timeout_s(self) -> float: ...


class SessionHub(Protocol):
    """What a session needs of the emulator's core (hub.Hub), as MqttTransportHandler needs
    ThingsBoard's TransportService: settings, counters, and the session events it reports."""

    faults: Faults
    registry: DeviceRegistry
    stats: Counter[str]

    @property
    def settings(self) -> SessionLimits: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    def loop_time(self) -> float: ...
    def on_session_open(self, session: MqttSession) -> None: ...
    def on_session_closed(self, session: MqttSession) -> None: ...
    def on_activity(self, session: MqttSession) -> None: ...
    def on_subscribe(self, session: MqttSession, kind: Sub) -> None: ...
    def on_unsubscribe(self, session: MqttSession, kind: Sub) -> None: ...


def refusal_code(connect: codec.Connect) -> int:
    """ReturnCodeResolver.getConnectionReturnCode for a failed access-token lookup."""
    has_user = bool(connect.username)
    has_pass = bool(connect.password)
    has_client = bool(connect.client_id.strip())
    if (has_user and has_pass and has_client) or (has_user != has_pass):
        v5 = RC_BAD_USERNAME_OR_PASSWORD
    elif not has_user and not has_pass and has_client:
        v5 = RC_CLIENT_ID_NOT_VALID
    else:
        v5 = RC_NOT_AUTHORIZED
    if connect.protocol_level == MQTT_5:
        return v5
    return V3_IDENTIFIER_REJECTED if v5 == RC_CLIENT_ID_NOT_VALID else V3_NOT_AUTHORIZED


class MqttSession(asyncio.Protocol):
    def __init__(self, hub: SessionHub, handle_publish: PublishHandler) -> None:
        self.hub = hub
        self._handle_publish = handle_publish
        self.id = str(uuid.uuid4())
        self.version = codec.MQTT_3_1_1
        self.device: Device | None = None
        self.transport: asyncio.Transport | None = None
        self.reader = codec.FrameReader(hub.settings.max_packet_bytes)
        self.subs: dict[str, int] = {}
        self.peer = ""
        self.closed = False
        self._msg_id = hub.faults.msg_id_start  # ThingsBoard's msgIdSeq: 0 but in tests
        # Outgoing frames wait here until the end of the current data_received, or of this loop
        # iteration for frames other sessions cause: one write (one syscall) for many packets.
        self._out: list[bytes] = []
        self._in_batch = False
        self._flush_scheduled = False
        # msg id (the untruncated int) -> (device RPC actor, request) of RPCs waiting for a PUBACK
        self._rpc_acks: dict[int, tuple[DeviceRpc, RpcRequest, asyncio.TimerHandle]] = {}
        self.client_rpc_timers: dict[int, asyncio.TimerHandle] = {}
        self._deferred: list[Callable[[], None]] = []
        self._publish_packet_id: int | None = None  # of the PUBLISH being handled
        self.last_activity = 0.0
        self.received = 0

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same interface
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.last_activity = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self._in_batch = True
        try:
            for first, body in self.reader.feed(data):
                if self.closed:
                    return
                self._frame(first, body)
        except codec.UnsupportedProtocol:
            self._write(codec.encode_connack(False, V3_UNACCEPTABLE_PROTOCOL, codec.MQTT_3_1_1))
            self.close(None)
        except codec.MalformedPacket as exc:
            log.info("malformed packet, closing", peer=self.peer, device=self._name, error=str(exc))
            self.close(RC_MALFORMED_PACKET)
        except Exception:
            # an emulator bug: say so loudly, drop this connection, keep serving the others
            log.exception("session failed, closing", peer=self.peer, device=self._name)
            self.close(RC_IMPLEMENTATION_SPECIFIC)
        finally:
            self._in_batch = False
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for _, _, timer in self._rpc_acks.values():
            timer.cancel()
        self._rpc_acks.clear()
        for timer in self.client_rpc_timers.values():
            timer.cancel()
        self.client_rpc_timers.clear()
        self.hub.on_session_closed(self)

    # ------------------------------------------------------------ inbound

    @property
    def _name(self) -> str | None:
        return self.device.name if self.device else None

    def _frame(self, first: int, body: bytes) -> None:
        packet = codec.decode(first, body, self.version)
        self.received += 1
        self.last_activity = self.hub.loop_time()
        if self.device is None:
            if not isinstance(packet, codec.Connect):
                raise codec.MalformedPacket("first packet is not CONNECT")
            self._on_connect(packet)
            return
        if isinstance(packet, codec.Publish):
            self._on_publish(packet)
        elif isinstance(packet, codec.PubAck):
            self._on_puback(packet.packet_id)
        elif isinstance(packet, codec.Subscribe):
            self._on_subscribe(packet)
        elif isinstance(packet, codec.Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, codec.PingReq):
            self.hub.on_activity(self)
            self._write(codec.encode_pingresp())
        elif isinstance(packet, codec.Disconnect):
            self.close(None)
        elif isinstance(packet, codec.Connect):
            raise codec.MalformedPacket("second CONNECT on a session")
        else:
            log.debug("packet ignored", device=self._name, packet=type(packet).__name__)

    def _on_connect(self, packet: codec.Connect) -> None:
        self.version = packet.protocol_level
        device = self.hub.registry.by_token.get(packet.username or "")
        if device is None:
            log.info("connect refused", peer=self.peer, version=self.version, client_id=packet.client_id)
            self.hub.stats["connects_refused"] += 1
            self._write(codec.encode_connack(False, refusal_code(packet), self.version))
            self.close(None)
            return
        self.device = device
        # MqttTransportHandler: sessionPresent = !cleanSession (no session state is kept)
        self._write(codec.encode_connack(not packet.clean_start, 0, self.version))
        self.hub.on_session_open(self)

    def _on_publish(self, packet: codec.Publish) -> None:
        device = self.device
        assert device is not None
        if packet.qos > MAX_SUPPORTED_QOS:
            log.info("QoS 2 publish refused", device=device.name, topic=packet.topic)
            self.close(RC_QOS_NOT_SUPPORTED)
            return
        self._deferred.clear()
        self._publish_packet_id = packet.packet_id
        try:
            reason = self._handle_publish(self, packet.topic, packet.payload)
        except GatewayConversionError as exc:
            # AbstractGatewaySessionHandler.ackOrClose: MQTT 5 acks 0x99 (nothing at QoS 0) and keeps
            # the session; 3.1.1 closes the channel without a word
            log.info("gateway data does not convert", device=device.name, topic=packet.topic, error=str(exc))
            self.hub.stats["bad_payloads"] += 1
            if self.version != MQTT_5:
                self.close(None)
            elif packet.packet_id is not None:
                self._write(codec.encode_puback(packet.packet_id, RC_PAYLOAD_FORMAT_INVALID, self.version))
            return
        except UncaughtRuntimeError as exc:
            # MqttTransportHandler.exceptionCaught: "Unexpected Exception", closeCtx(SERVER_SHUTTING_DOWN)
            log.info(
                "payload raised past the adaptor, closing",
                device=device.name,
                topic=packet.topic,
                error=str(exc),
            )
            self.hub.stats["bad_payloads"] += 1
            self.close(RC_SERVER_SHUTTING_DOWN)
            return
        except GatewayError as exc:
            # handleGatewayPublishMsg's RuntimeException branch: ack 0x83, then close
            log.info("bad gateway message", device=device.name, topic=packet.topic, error=str(exc))
            self.hub.stats["bad_payloads"] += 1
            if packet.packet_id is not None:
                self._write(codec.encode_puback(packet.packet_id, RC_IMPLEMENTATION_SPECIFIC, self.version))
            self.close(RC_IMPLEMENTATION_SPECIFIC)
            return
        except AdaptorError as exc:
            # sendResponseForAdaptorErrorOrCloseContext: a v5 QoS 1 publish gets PUBACK 0x99, anything
            # else (3.1.1, or QoS 0) closes the session (v5: DISCONNECT 0x99)
            log.info("bad payload", device=device.name, topic=packet.topic, error=str(exc))
            self.hub.stats["bad_payloads"] += 1
            if self.version == MQTT_5 and packet.packet_id is not None:
                self._write(codec.encode_puback(packet.packet_id, RC_PAYLOAD_FORMAT_INVALID, self.version))
            else:
                self.close(RC_PAYLOAD_FORMAT_INVALID)
            return
        if reason != NO_ACK and packet.packet_id is not None:
            self._ack(packet.packet_id, reason)
        # work ThingsBoard does after the PUBACK (responses, pending RPC pushes)
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for action in deferred:
                action()

    def defer(self, action: Callable[[], None]) -> None:
        self._deferred.append(action)

    def ack_later(self, delay_s: float, reason: int) -> None:
        """PUBACK the PUBLISH being handled ``delay_s`` from now, where ThingsBoard answers it from a
        callback that fires later (a transport API request that times out); nothing at QoS 0."""
        packet_id = self._publish_packet_id
        if packet_id is not None:
            self.hub.loop.call_later(delay_s, self._ack_if_open, packet_id, reason)

    def _ack_if_open(self, packet_id: int, reason: int) -> None:
        if not self.closed:
            self._ack(packet_id, reason)

    def _ack(self, packet_id: int, reason: int) -> None:
        faults = self.hub.faults
        name = self.device.name if self.device else ""
        if faults.drop_pubacks and faults.take_puback_drop(name):
            self.hub.stats["pubacks_dropped"] += 1
            return
        frame = codec.encode_puback(packet_id, reason, self.version)
        if faults.puback_delay_ms:
            self.hub.loop.call_later(faults.puback_delay_ms / 1000, self._write, frame)
            return
        self._write(frame)

    def _on_puback(self, packet_id: int) -> None:
        # the 16-bit id off the wire against the keys of full ints: no match past the wrap
        entry = self._rpc_acks.pop(packet_id, None)
        if entry is not None:
            actor, request, timer = entry
            timer.cancel()
            actor.on_delivered(request)

    def _on_subscribe(self, packet: codec.Subscribe) -> None:
        device = self.device
        assert device is not None
        codes: list[int] = []
        added: list[Sub] = []
        for topic, options in packet.filters:
            kind = SUBSCRIBABLE.get(topic)
            if kind is None:
                log.info("subscription refused", device=device.name, topic=topic)
                codes.append(RC_TOPIC_FILTER_INVALID if self.version == MQTT_5 else V3_SUBACK_FAILURE)
                continue
            qos = min(options & 0x03, MAX_SUPPORTED_QOS)
            self.subs[topic] = qos
            codes.append(qos)
            added.append(kind)
        self._write(codec.encode_suback(packet.packet_id, codes, self.version))
        for kind in added:
            self.hub.on_subscribe(self, kind)

    def _on_unsubscribe(self, packet: codec.Unsubscribe) -> None:
        for topic in packet.topics:
            kind = SUBSCRIBABLE.get(topic)
            if self.subs.pop(topic, None) is not None and kind is not None:
                self.hub.on_unsubscribe(self, kind)
        self._write(codec.encode_unsuback(packet.packet_id, len(packet.topics), self.version))

    # ------------------------------------------------------------ outbound

    def _write(self, frame: bytes) -> None:
        self._out.append(frame)
        if not self._in_batch and not self._flush_scheduled:
            self._flush_scheduled = True
            self.hub.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def publish(self, topic: str, payload: bytes, qos: int) -> int | None:
        """Send a PUBLISH to the client; returns its msg id (the untruncated int) for QoS 1.

        The next msg id whatever the QoS (JsonMqttAdaptor.createMqttPublishMsg,
        MqttTransportAdaptor.createMqttPublishMsg: ``ctx.nextMsgId()``); only its low 16 bits go on
        the wire (netty MqttEncoder.encodePublishMessage: ``buf.writeShort(packetId)``), 0 included.
        """
        self._msg_id += 1
        msg_id = self._msg_id
        packet_id = msg_id & 0xFFFF if qos else None
        self._write(codec.encode_publish(topic, payload, qos, packet_id, self.version))
        return msg_id if qos else None

    def sub_qos(self, topic: str) -> int:
        """MqttDeviceAwareSessionContext.getQoSForTopic: the subscription's QoS, default 1."""
        return self.subs.get(topic, 1)

    def send_rpc(self, actor: DeviceRpc, request: RpcRequest) -> None:
        """RpcSink for a directly connected device: v1/devices/me/rpc/request/{id}."""
        topic = f"v1/devices/me/rpc/request/{request.request_id}"
        payload = dumps({"method": request.method, "params": request.params}).encode()
        qos = self.sub_qos("v1/devices/me/rpc/request/+")
        msg_id = self.publish(topic, payload, qos)
        if msg_id is not None:
            timeout_s = min(
                self.hub.settings.delivery_timeout_s, max(0.0, request.expiration_ms / 1000 - time.time())
            )
            timer = self.hub.loop.call_later(timeout_s, self._rpc_ack_timeout, msg_id)
            self._rpc_acks[msg_id] = (actor, request, timer)
        actor.on_written(request, qos)

    def _rpc_ack_timeout(self, msg_id: int) -> None:
        entry = self._rpc_acks.pop(msg_id, None)
        if entry is not None:
            actor, request, _ = entry
            actor.on_delivery_timeout(request)

    def close(self, reason_code: int | None) -> None:
        """Close the connection; on MQTT 5 say why first (ThingsBoard's closeCtx)."""
        if self.closed:
            return
        self.closed = True
        if self.transport is None:
            return
        if reason_code is not None and self.version == MQTT_5:
            self._out.append(codec.encode_disconnect(reason_code, self.version))
        self._flush()
        self.transport.close()

    def abort(self) -> None:
        """Cut the TCP connection without a word (fault injection: a dead link)."""
        if self.transport is not None:
            self.transport.abort()

    def view(self) -> dict[str, Any]:
        return {
            "sessionId": self.id,
            "device": self._name,
            "peer": self.peer,
            "mqttVersion": {3: "3.1", 4: "3.1.1", 5: "5"}.get(self.version, str(self.version)),
            "subscriptions": dict(self.subs),
            "received": self.received,
            "msgId": self._msg_id,  # the last publish's (DeviceSessionCtx.msgIdSeq)
        }
