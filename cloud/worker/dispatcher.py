"""The worker's one persistent MQTT connection to ThingsBoard, as the ``dispatcher`` device.

A command goes out as a client-side RPC ``v1/devices/me/rpc/request/{n}`` with
``{"method": "rotate", "params": DispatchParams}``; the shipped rule chain turns it into the
server-side RPC ``rotate`` to the motor device and answers on ``v1/devices/me/rpc/response/{n}``
with the edge's reply or ThingsBoard's error. ``send`` returns at the broker's PUBACK; the answer
arrives later and goes to the ``on_reply`` callback with the command and send attempt it belongs
to. What each answer means, and when a command may go out again, is cloud/worker/rpc_timeline.py's.
Control RPCs (hold, resume, stop, status) take the same path, ``{"method", "params": {"device"}}``
(the chain routes every method by ``params.device``), and ``call`` awaits their answer itself.

While ThingsBoard is away the dispatcher reconnects with exponential backoff, and ``wait_ready``
blocks: the consumers stop reading, so the backlog stays in Redis (durable) instead of memory.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from cloud.mqtt.client import ClosedByBroker, ConnectionLost, MqttClient, MqttError
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rpc_timeline import TRANSPORT_TIMEOUT_REPLY
from cloud.worker.settings import MqttSettings
from cloud.worker.takeover import TakeoverWatch
from cloud.worker.token_lease import token_fingerprint
from giftwheel.contracts.motor import DispatchParams, RpcMethod

log = structlog.get_logger(__name__)

REQUEST_TOPIC = "v1/devices/me/rpc/request/{}"
RESPONSE_FILTER = "v1/devices/me/rpc/response/+"
RESPONSE_PREFIX = "v1/devices/me/rpc/response/"
# ThingsBoard publishes RPC responses at the QoS of the matching subscription
# (MqttDeviceAwareSessionContext.getQoSForTopic) and keeps no state for a publish it sent:
# MqttTransportHandler never re-sends one and tracks PUBACKs only for its own RPCs to a device
# (rpcAwaitingAck), so QoS 1 buys nothing here. It costs a session: ThingsBoard's 16-bit packet
# ids wrap to 0 every 65,536 publishes and a PUBACK 0 gets the session closed (cloud.mqtt.client).
RESPONSE_QOS = 0


class DispatchUnavailable(Exception):
    """ThingsBoard cannot take commands right now; retry after ``wait_ready``."""


class DispatchUncertain(DispatchUnavailable):
    """Written, but the connection died before the PUBACK: ThingsBoard may have the request, so a
    server-side RPC of it may be pending. It counts as a send; the next waits for its expiry."""


@dataclass(frozen=True, slots=True)
class Sent:
    """What a request id on the current session stands for, to match its answer."""

    stream: str
    command_id: str
    device: str
    # The command's send attempt this request is (1 = first): an answer moves only that attempt.
    attempt: int
    # A re-ask of a delivered command (RotateParams.reask): the edge queues nothing, says where it stands.
    reask: bool = False


@dataclass(frozen=True, slots=True)
class ControlCall:
    """A control RPC awaiting its answer: the request it sent, and where the answer goes."""

    request: dict[str, Any]
    answer: asyncio.Future[dict[str, Any]]

    def settle(self, reply: dict[str, Any]) -> None:
        if not self.answer.done():
            self.answer.set_result(reply)


ReplyCallback = Callable[[Sent, dict[str, Any]], None]


def is_own_request(sent: Sent, reply: dict[str, Any]) -> bool:
    """The answer is the request itself: ThingsBoard has no device of that name.

    The shipped chain's change-originator step fails on an unknown name and its Failure route
    hands the original message to the reply node (docs/thingsboard.md s.1). Neither the edge's
    replies nor ThingsBoard's errors carry ``method`` and ``params``, and only this request carries
    this commandId for this device, so the match cannot mistake another answer for it."""
    params = reply.get("params")
    return (
        reply.get("method") == RpcMethod.ROTATE.value
        and isinstance(params, dict)
        and params.get("commandId") == sent.command_id
        and params.get("device") == sent.device
    )


class Dispatcher:
    def __init__(
        self,
        settings: MqttSettings,
        metrics: WorkerMetrics,
        on_reply: ReplyCallback,
        *,
        client_id: str,
        answers_wait_s: float,
    ) -> None:
        self._settings = settings
        # After this long no answer to a request can matter any more (RpcTimeline.attempt_lifetime_s).
        self._answers_wait_s = answers_wait_s
        # MQTT brokers drop an older connection with the same client id: one id per worker.
        self._client_id = client_id
        self._metrics = metrics
        self._on_reply = on_reply
        self._client: MqttClient | None = None
        self._ready = asyncio.Event()
        self._request_seq = 0
        # request id -> what it stands for, and when it was sent (loop time); in send order
        self._awaiting: dict[int, tuple[Sent | ControlCall, float]] = {}
        self._stopping = False

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def run(self, access_token: str) -> None:
        """Keep a connection up as the dispatcher device of ``access_token`` until cancelled."""
        settings = self._settings
        watch = TakeoverWatch(
            self._metrics,
            window_s=settings.takeover_window_s,
            alarm_after=settings.takeover_alarm_after,
            token_fingerprint=token_fingerprint(access_token),
        )
        delay = settings.reconnect_min_s
        while not self._stopping:
            try:
                client = await self._connect(access_token)
            except MqttError as exc:
                self._metrics.mqtt_reconnects.inc()
                log.warning("thingsboard_unreachable", error=str(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, settings.reconnect_max_s)
                continue
            connected_at = asyncio.get_running_loop().time()
            self._client = client
            self._forget_all("CONNECTION_LOST")
            self._ready.set()
            self._metrics.mqtt_connected.set(1)
            log.info("thingsboard_connected", host=self._settings.host, port=self._settings.port)
            try:
                reason = await client.wait_closed()
            finally:
                self._ready.clear()
                self._metrics.mqtt_connected.set(0)
                self._client = None
                # Answers for requests of a dead session never come: the ledger's deadlines retry them.
                self._forget_all("CONNECTION_LOST")
            if not self._stopping:
                log.warning("thingsboard_connection_lost", reason=str(reason))
                lived_s = asyncio.get_running_loop().time() - connected_at
                if watch.session_ended(lived_s, closed_by_server=isinstance(reason, ClosedByBroker)):
                    # Cut short right after connecting: back off as after a failed connect.
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, settings.reconnect_max_s)
                else:
                    delay = settings.reconnect_min_s

    async def _connect(self, access_token: str) -> MqttClient:
        client = await MqttClient.connect(
            self._settings.host,
            self._settings.port,
            client_id=self._client_id,
            username=access_token,
            keepalive_s=self._settings.keepalive_s,
            timeout_s=self._settings.connect_timeout_s,
            on_message=self._on_message,
        )
        try:
            await client.subscribe(
                RESPONSE_FILTER, qos=RESPONSE_QOS, timeout_s=self._settings.puback_timeout_s
            )
        except MqttError:
            await client.close()
            raise
        return client

    async def send(
        self, stream: str, command_id: str, device: str, rounds: int, *, attempt: int, reask: bool = False
    ) -> None:
        """Publish one rotate command as send ``attempt`` of it (``reask``: asking after a delivered
        one, RotateParams.reask); returns at PUBACK.

        Raises DispatchUnavailable when nothing was written (not connected), DispatchUncertain
        when the connection died after the write, before its PUBACK."""
        params = DispatchParams(
            command_id=command_id, rounds=rounds, device=device, reask=True if reask else None
        )
        request = {
            "method": RpcMethod.ROTATE.value,
            "params": params.model_dump(by_alias=True, exclude_none=True),
        }
        await self._publish(request, Sent(stream, command_id, device, attempt, reask))

    async def call(self, method: RpcMethod, device: str, *, timeout_s: float) -> dict[str, Any]:
        """Send one control RPC to a motor and await its answer: the edge's reply, or an ErrorReply
        (ThingsBoard's TIMEOUT or NO_ACTIVE_CONNECTION, UNKNOWN_DEVICE when ThingsBoard has no such
        device, NO_ANSWER after ``timeout_s``, CONNECTION_LOST when the session ended first).

        Raises DispatchUnavailable when nothing was written, DispatchUncertain as ``send``."""
        request = {"method": method.value, "params": {"device": device}}
        call = ControlCall(request, asyncio.get_running_loop().create_future())
        request_id = await self._publish(request, call)
        try:
            return await asyncio.wait_for(asyncio.shield(call.answer), timeout_s)
        except TimeoutError:
            return {"error": "NO_ANSWER", "detail": f"no answer from ThingsBoard within {timeout_s:g} s"}
        finally:
            self._awaiting.pop(request_id, None)

    async def _publish(self, request: dict[str, Any], awaiting: Sent | ControlCall) -> int:
        client = self._client
        if client is None or not client.is_connected:
            raise DispatchUnavailable("not connected to ThingsBoard")
        payload = orjson.dumps(request)
        self._request_seq += 1
        request_id = self._request_seq
        started = asyncio.get_running_loop().time()
        self._forget_older_than(started - self._answers_wait_s)
        self._awaiting[request_id] = (awaiting, started)
        try:
            # From the connected check to the socket write nothing awaits: once here, it is written.
            await client.publish(
                REQUEST_TOPIC.format(request_id), payload, timeout_s=self._settings.puback_timeout_s
            )
        except (ConnectionLost, MqttError) as exc:
            self._awaiting.pop(request_id, None)  # its answer would go to the dead session
            raise DispatchUncertain(str(exc)) from exc
        self._metrics.publish_seconds.observe(asyncio.get_running_loop().time() - started)
        return request_id

    def _forget_all(self, error: str) -> None:
        for awaiting, _ in self._awaiting.values():
            if isinstance(awaiting, ControlCall):
                awaiting.settle({"error": error, "detail": "the connection to ThingsBoard ended first"})
        self._awaiting.clear()

    def _forget_older_than(self, sent_before: float) -> None:
        """Requests answered only by the transport's timeout whose chain answer never came."""
        while self._awaiting:
            request_id, (_, sent_at) = next(iter(self._awaiting.items()))
            if sent_at >= sent_before:
                return
            awaiting, _ = self._awaiting.pop(request_id)
            if isinstance(awaiting, ControlCall):
                awaiting.settle({"error": "NO_ANSWER", "detail": "no answer from ThingsBoard in time"})

    def _on_message(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(RESPONSE_PREFIX):
            log.warning("unexpected_topic", topic=topic)
            return
        try:
            request_id = int(topic.removeprefix(RESPONSE_PREFIX))
        except ValueError:
            log.warning("unexpected_topic", topic=topic)
            return
        entry = self._awaiting.get(request_id)
        if entry is None:
            log.warning("reply_for_unknown_request", request_id=request_id)
            return
        try:
            reply = orjson.loads(payload)
        except orjson.JSONDecodeError:
            reply = {"error": "MALFORMED_REPLY", "detail": payload[:200].decode(errors="replace")}
        if not isinstance(reply, dict):
            reply = {"error": "MALFORMED_REPLY", "detail": str(reply)[:200]}
        awaiting = entry[0]
        if isinstance(awaiting, ControlCall):
            del self._awaiting[request_id]
            if reply == awaiting.request:  # the request itself came back: no such device
                reply = {"error": "UNKNOWN_DEVICE", "detail": "ThingsBoard has no device of that name"}
            awaiting.settle(reply)
            return
        if reply != TRANSPORT_TIMEOUT_REPLY:
            # After the transport's timeout the chain's own answer still comes on this session.
            del self._awaiting[request_id]
        self._on_reply(awaiting, reply)

    async def close(self) -> None:
        self._stopping = True
        if self._client is not None:
            await self._client.close()
