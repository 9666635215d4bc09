"""A gateway connection on the emulator that stands in for a Pi: it records every RPC its motors get.

It connects with the gateway's access token (on the worker's own client, ``cloud.mqtt.client``),
announces its motors (``v1/gateway/connect``), subscribes to ``v1/gateway/rpc`` and answers each
``rotate`` as the edge does (a RotateReply, ``duplicate`` set for a commandId it has seen, ``held``
while its motor is held; a re-ask with the outcome a test set in ``outcomes``, ``pending`` by default,
or UNKNOWN_COMMAND for a commandId it never took), and ``hold``, ``resume``, ``stop`` and ``status``
with the edge's reply models (it turns nothing: its queue is always empty, a stop clears no command). Every
arrival is kept with its wall-clock time, so tests assert what reached a device and the benchmark
measures latency up to that point.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from cloud.mqtt.client import MqttClient
from giftwheel.contracts.motor import (
    CommandOutcome,
    ErrorReply,
    HoldReply,
    MotorState,
    ResumeReply,
    RotateReply,
    RpcError,
    RpcMethod,
    StatusReply,
    StopReply,
)

RPC_TOPIC = "v1/gateway/rpc"


@dataclass(frozen=True, slots=True)
class Arrival:
    device: str
    request_id: int
    method: str
    params: dict[str, Any]
    at: float  # time.time() when the packet was read off the connection

    @property
    def command_id(self) -> str:
        return str(self.params.get("commandId", ""))

    @property
    def rounds(self) -> int:
        return int(self.params.get("rounds", 0))

    @property
    def reask(self) -> bool:
        return self.method == RpcMethod.ROTATE and self.params.get("reask") is True


class RpcSink:
    def __init__(self, host: str, port: int, token: str, devices: list[str], *, reply: bool = True) -> None:
        self._host = host
        self._port = port
        self._token = token
        self.devices = devices
        self.reply = reply
        self.arrivals: list[Arrival] = []
        self._seen: set[str] = set()
        # What a re-ask of a commandId is answered (absent: pending if it took the command, else
        # UNKNOWN_COMMAND); a commandId here counts as taken (a Pi that had it before a restart).
        self.outcomes: dict[str, CommandOutcome] = {}
        self.held: set[str] = set()
        # Motors whose emergency stop button is pressed: a resume is refused (ESTOP_ENGAGED).
        self.estop: set[str] = set()
        self._client: MqttClient | None = None
        self._replies: set[asyncio.Task[Any]] = set()
        self.changed = asyncio.Event()

    async def start(self) -> None:
        """Connect as the gateway (a refused token raises ConnectionRefused) and announce the motors."""
        client = await MqttClient.connect(
            self._host,
            self._port,
            client_id=f"sink-{self._token}",
            username=self._token,
            on_message=self._on_message,
        )
        self._client = client
        await client.subscribe(RPC_TOPIC)
        for device in self.devices:
            await client.publish(
                "v1/gateway/connect", json.dumps({"device": device, "type": "motor"}).encode()
            )

    def _on_message(self, topic: str, payload: bytes) -> None:
        at = time.time()
        if topic != RPC_TOPIC or self._client is None:
            return
        body = json.loads(payload)
        data = body["data"]
        arrival = Arrival(body["device"], int(data["id"]), data["method"], data.get("params") or {}, at)
        self.arrivals.append(arrival)
        self.changed.set()
        if self.reply:
            answer = {"device": arrival.device, "id": arrival.request_id, "data": self._answer(arrival)}
            task = asyncio.create_task(self._client.publish(RPC_TOPIC, json.dumps(answer).encode()))
            self._replies.add(task)
            task.add_done_callback(self._replies.discard)

    def _answer(self, arrival: Arrival) -> dict[str, Any]:
        device = arrival.device
        if arrival.method == RpcMethod.HOLD:
            self.held.add(device)
            reply: Any = HoldReply(state=MotorState.HELD, queued_rounds=0)
        elif arrival.method == RpcMethod.RESUME and device in self.estop:
            reply = ErrorReply(error=RpcError.ESTOP_ENGAGED.value, detail="the emergency stop is pressed")
        elif arrival.method == RpcMethod.RESUME:
            reply = ResumeReply(resumed=device in self.held, queued_rounds=0)
            self.held.discard(device)
        elif arrival.method == RpcMethod.STOP:
            reply = StopReply(cleared_commands=[], cleared_rounds=0)
        elif arrival.method == RpcMethod.STATUS:
            state = MotorState.HELD if device in self.held else MotorState.IDLE
            reply = StatusReply(state=state, queued_rounds=0, rounds_completed=0, commands_done=0)
        elif arrival.reask and arrival.command_id in self.outcomes.keys() | self._seen:
            reply = RotateReply(
                command_id=arrival.command_id,
                queued_rounds=0,
                duplicate=True,
                held=device in self.held,
                outcome=self.outcomes.get(arrival.command_id, CommandOutcome.PENDING),
            )
        elif arrival.reask:
            reply = ErrorReply(error=RpcError.UNKNOWN_COMMAND.value, detail="no record of it")
        else:
            duplicate = arrival.command_id in self._seen
            self._seen.add(arrival.command_id)
            reply = RotateReply(
                command_id=arrival.command_id,
                queued_rounds=arrival.rounds,
                duplicate=duplicate,
                held=device in self.held,
            )
        return dict(reply.model_dump(by_alias=True, mode="json"))

    def rotates(self) -> list[Arrival]:
        """The rotates that may turn a motor (re-asks left out: they never do)."""
        return [a for a in self.arrivals if a.method == RpcMethod.ROTATE and not a.reask]

    def reasks(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.reask]

    def rounds_by_device(self, *, distinct: bool = True) -> dict[str, int]:
        """Rounds each device was asked for; ``distinct`` counts a repeated commandId once (as the edge)."""
        totals: dict[str, int] = {}
        seen: set[str] = set()
        for a in self.rotates():
            if distinct and a.command_id in seen:
                continue
            seen.add(a.command_id)
            totals[a.device] = totals.get(a.device, 0) + a.rounds
        return totals

    async def close(self) -> None:
        for task in list(self._replies):
            task.cancel()
        if self._client is not None:
            await self._client.close()
