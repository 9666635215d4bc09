"""The thingsboard-gateway connector: a thin adapter from the gateway's host API to our modules."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, ClassVar, NamedTuple

import structlog
from thingsboard_gateway.connectors.connector import Connector

from edge.compat import tb_gateway
from edge.forwarder import TelemetryForwarder
from edge.gateway_host import deliver_rpcs_directly, harden
from edge.rpc import RpcService
from edge.runtime import EdgeRuntime
from giftwheel.contracts.motor import ErrorReply, RpcError

log = structlog.get_logger(__name__)


class GatewayPublisher:
    """Publishes through the gateway's own MQTT session, waiting for ThingsBoard's PUBACK."""

    def __init__(self, gateway: Any, connector: Connector, timeout_s: float, *, device_type: str) -> None:
        self._gateway = gateway
        self._connector = connector
        self._timeout_s = timeout_s
        self._device_type = device_type
        self._announced: set[str] = set()
        self._tuned_socket: socket.socket | None = None

    def is_connected(self) -> bool:
        """Connected AND able to take RPCs: the gateway installs its RPC handler a moment after the
        MQTT connect, and silently drops sub-device RPCs that arrive before. Until then we announce
        nothing, so ThingsBoard holds RPCs for the motors instead of sending them into that gap."""
        client = tb_gateway.mqtt_client(self._gateway)
        if client is None:
            return False
        self._no_delay(tb_gateway.mqtt_socket(client))
        tb_gateway.skip_puback_for_packet_id_zero(client)
        tb_gateway.share_success_puback_objects(client)
        return tb_gateway.listens_for_device_rpcs(client)

    def _no_delay(self, sock: socket.socket | None) -> None:
        """paho leaves Nagle on: an RPC reply right after the PUBACK of its request then waits for
        the broker's delayed ACK (~40 ms measured). Set once per connection."""
        if sock is not None and sock is not self._tuned_socket:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                return  # closed under us; the next connection gets tuned
            self._tuned_socket = sock

    def publish(self, telemetry: dict[str, list[dict[str, Any]]]) -> set[str]:
        announced = {device: items for device, items in telemetry.items() if self._announce(device)}
        if not announced:
            return set()
        # One message for every device, straight to paho, where the client would only publish it.
        connected = tb_gateway.mqtt_client(self._gateway)
        if connected is not None:
            info = tb_gateway.publish_gateway_telemetry(connected, announced, 1)
            if info is not None:
                return set(announced) if self._acknowledged([info]) else set()
        client = self._gateway.tb_client.client
        in_flight: dict[str, list[Any]] = {}
        for device, items in announced.items():
            info = client.gw_send_telemetry(device, items, quality_of_service=1)
            in_flight[device] = (
                info.message_info if isinstance(info.message_info, list) else [info.message_info]
            )
        # Every message is on the wire before the first acknowledgement is awaited: one round trip
        # to ThingsBoard for the whole batch, not one per device.
        return {device for device, parts in in_flight.items() if self._acknowledged(parts)}

    def _announce(self, device: str) -> bool:
        if device not in self._announced:
            # Registers the sub-device with the gateway (RPC routing) and sends v1/gateway/connect.
            if not self._gateway.add_device(
                device, {"connector": self._connector}, device_type=self._device_type
            ):
                return False
            self._announced.add(device)
        return True

    def _acknowledged(self, parts: list[Any]) -> bool:
        try:
            for part in parts:
                part.wait_for_publish(self._timeout_s)
        except (RuntimeError, ValueError):  # paho: not connected / queue full
            return False
        return all(part.is_published() for part in parts)


class Rpc(NamedTuple):
    device: Any
    request_id: Any
    method: object
    params: object


# An RPC that took longer than this to answer on paho's network thread (a slow local Redis) sends
# the RPCs after it to our RPC thread, until that thread answers one within it again. So paho's
# thread waits on Redis for one slow call per slow spell, at most the edge's Redis socket timeout,
# and otherwise keeps reading (acknowledgements, keepalives) while Redis is slow.
INLINE_RPC_SLOW_S = 0.05


class RpcDispatch:
    """Answers each RPC on the thread that delivers it (paho's network thread) while answers are
    fast, else on a thread of its own; either way in the order delivered. Answering where the RPC
    arrives saves a thread hand-off per RPC (~7 % of the edge's CPU at 180 RPCs/s on the 2-core
    test box); an RPC is answered there only when the thread has none left, so none overtakes an
    earlier one (a stop overtaking the rotate before it would leave that rotate queued)."""

    def __init__(self, answer: Callable[[Rpc], None], slow_s: float = INLINE_RPC_SLOW_S) -> None:
        self._answer = answer
        self._slow_s = slow_s
        self._rpcs: SimpleQueue[Rpc | None] = SimpleQueue()
        # Each counter has one writer (delivering thread, RPC thread): equal means the thread is idle.
        self._queued = 0
        self._answered = 0
        self._inline = True
        self._thread = threading.Thread(target=self._serve, name="giftwheel-rpc", daemon=True)
        self._thread.start()

    def deliver(self, rpc: Rpc) -> None:
        if self._inline and self._queued == self._answered:
            self._inline = self._answered_fast(rpc)
        else:
            self._queued += 1
            self._rpcs.put(rpc)

    def close(self) -> None:
        self._rpcs.put(None)  # after the RPCs already queued: each is still answered
        self._thread.join()

    def _serve(self) -> None:
        while (rpc := self._rpcs.get()) is not None:
            if self._answered_fast(rpc):
                self._inline = True
            self._answered += 1

    def _answered_fast(self, rpc: Rpc) -> bool:
        started = time.monotonic()
        try:
            self._answer(rpc)
        except Exception:
            # Only the reply failed (handle's errors are answered): ThingsBoard times the RPC out and
            # the sender retries. Neither thread may end over it, or no RPC is answered again.
            log.exception("rpc reply failed", device=rpc.device, request_id=rpc.request_id)
        return time.monotonic() - started <= self._slow_s


class GiftwheelConnector(Connector):  # type: ignore[misc]
    runtime: ClassVar[EdgeRuntime]

    def __init__(self, gateway: Any, config: dict[str, Any], connector_type: str) -> None:
        self._gateway = gateway
        self._config = config
        self._type = connector_type
        self.name: str = config["name"]
        self.statistics = {"MessagesReceived": 0, "MessagesSent": 0}  # read by the gateway_stats RPC
        self._stopped = False  # must stay False until close(), or the gateway never closes us
        runtime = self.runtime
        harden(gateway)
        deliver_rpcs_directly(gateway, set(runtime.controllers), self.server_side_rpc_handler)
        runtime.attach_gateway(gateway)
        self._rpc = RpcService(runtime.controllers, runtime.ledger)
        # server_side_rpc_handler runs on paho's network thread.
        self._rpcs = RpcDispatch(lambda rpc: self._answer(*rpc))
        publisher = GatewayPublisher(
            gateway,
            self,
            runtime.settings.limits.publish_timeout_s,
            device_type=runtime.settings.thingsboard.motor_profile,
        )
        self._forwarder = TelemetryForwarder(
            runtime.outbox,
            runtime.ledger,
            list(runtime.controllers),
            publisher,
            batch=runtime.settings.limits.outbox_batch,
            heartbeat_interval_s=runtime.settings.heartbeat_interval_s,
            gather_s=runtime.settings.telemetry_gather_s,
        )

    def open(self) -> None:
        self._forwarder.start()
        # The gateway opens its connectors once it is built: what is alive now (the gateway, its
        # libraries, ~80k objects) lives as long as the daemon. Frozen, it is left out of every
        # full collection, each of which pauses all threads, the RPC path's included.
        gc.freeze()

    def close(self) -> None:
        self._forwarder.close()
        self._rpcs.close()
        self._stopped = True

    def get_id(self) -> str | None:
        return self._config.get("id")

    def get_name(self) -> str:
        return self.name

    def get_type(self) -> str:
        return self._type

    def get_config(self) -> dict[str, Any]:
        return self._config

    def is_connected(self) -> bool:
        return self.runtime.thingsboard_connected()

    def is_stopped(self) -> bool:
        return self._stopped

    def on_attributes_update(self, content: dict[str, Any]) -> None:
        log.debug("shared attributes ignored", content=content)

    def server_side_rpc_handler(self, content: dict[str, Any]) -> None:
        self.statistics["MessagesReceived"] += 1
        data = content.get("data") or {}
        device = content.get("device")
        request_id = data.get("id", content.get("id"))
        self._rpcs.deliver(Rpc(device, request_id, data.get("method"), data.get("params")))

    def _answer(self, device: Any, request_id: Any, method: object, params: object) -> None:
        try:
            reply = self._rpc.handle(str(device), method, params)
        except Exception as exc:  # a bug must still answer, or ThingsBoard waits for its timeout
            log.exception("rpc failed", device=device, method=method)
            reply = ErrorReply(error=RpcError.UNAVAILABLE.value, detail=f"edge error: {exc!r}").model_dump()
        log.info("rpc", device=device, request_id=request_id, method=method, reply=reply)
        self._reply(device, request_id, reply)
        self.statistics["MessagesSent"] += 1

    def _reply(self, device: Any, request_id: Any, reply: dict[str, Any]) -> None:
        """Published from this thread where the gateway would only publish it (connected, no rate
        limit), else the gateway's way, which waits for the connection and the limit. QoS 1: paho
        resends it after a reconnect (the gateway's default is 0)."""
        client = tb_gateway.mqtt_client(self._gateway)
        if client is not None and tb_gateway.publish_device_rpc_reply(client, device, request_id, reply, 1):
            return
        # A dict without success_sent is published as-is.
        self._gateway.send_rpc_reply(device=device, req_id=request_id, content=reply, quality_of_service=1)


def bind(runtime: EdgeRuntime) -> type[GiftwheelConnector]:
    """The gateway constructs connectors itself; this class carries our runtime to it."""
    return type("GiftwheelConnector", (GiftwheelConnector,), {"runtime": runtime})
