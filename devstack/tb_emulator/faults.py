"""Fault injection the other areas' tests switch on over the HTTP side (``/api/faults``).

Each fault is a named, typed setting (a data table, not branches in the transport): lost PUBACKs
make clients re-send (so receivers must dedupe), slow PUBACKs and slow gateway replies stretch
latency; the actions (cut a session, re-send pending RPCs) are on the HTTP side.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

JAVA_INT_MAX = 2**31 - 1


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # The next N PUBACKs to client publishes are not sent (the message IS processed: an ack lost on
    # the wire, so the client re-sends a duplicate after reconnecting).
    drop_pubacks: int = Field(default=0, ge=0)
    # Only for this device's sessions (None: any device).
    drop_pubacks_device: str | None = None
    # Every PUBACK is sent this much later (the message is processed at once).
    puback_delay_ms: float = Field(default=0.0, ge=0, le=600_000)
    # A gateway's RPC reply (v1/gateway/rpc) is acted on this much later.
    gateway_reply_delay_ms: float = Field(default=0.0, ge=0, le=600_000)
    # Test-only: where a session opened from now on starts numbering its publishes (ThingsBoard
    # always starts at 0: DeviceSessionCtx.msgIdSeq), so a test reaches the 16-bit packet id wrap
    # (session.MqttSession.publish) in a few publishes instead of 65,536.
    msg_id_start: int = Field(default=0, ge=0, le=JAVA_INT_MAX)

    def take_puback_drop(self, device: str) -> bool:
        if self.drop_pubacks <= 0:
            return False
        if self.drop_pubacks_device is not None and self.drop_pubacks_device != device:
            return False
        self.drop_pubacks -= 1
        return True


class FaultsPatch(BaseModel):
    """A partial update of Faults; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    drop_pubacks: int | None = Field(default=None, ge=0)
    drop_pubacks_device: str | None = None
    puback_delay_ms: float | None = Field(default=None, ge=0, le=600_000)
    gateway_reply_delay_ms: float | None = Field(default=None, ge=0, le=600_000)
    msg_id_start: int | None = Field(default=None, ge=0, le=JAVA_INT_MAX)
