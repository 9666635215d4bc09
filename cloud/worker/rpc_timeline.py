"""One command's RPC through ThingsBoard, as a timeline the worker follows and never races.

The dispatcher's client-side RPC enters the shipped chain, whose "RPC to motor" node holds a
server-side RPC for its ``timeoutInSeconds`` (``chain_timeout_s``); ThingsBoard then answers on the
dispatcher's session: the edge's reply, or TIMEOUT / NO_ACTIVE_CONNECTION at the RPC's expiry, or,
from the transport, ``{"error":"timeout"}`` once CLIENT_SIDE_RPC_TIMEOUT (``client_timeout_s``)
passed without either. The worker sends a command again only after an answer that ended the
server-side RPC, or, when no answer can come (the session that sent it is gone, or the transport
gave up first), once no RPC of that send can still be pending: ``attempt_lifetime_s`` after it.
So at most one RPC per command is pending in ThingsBoard. docs/thingsboard.md s.1 has the numbers.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# DefaultTbRuleEngineRpcService.scheduleTimeout (thingsboard/thingsboard application/src/main/java/
# org/thingsboard/server/service/rpc/DefaultTbRuleEngineRpcService.java @dfe65d5): the RPC node's
# answer comes at the latest this long after the server-side RPC expired.
RULE_ENGINE_GRACE_S = 1.0

# DefaultTransportService.processTimeout and JsonConverter.toJson(ToServerRpcResponseMsg)
# (common/transport/transport-api/.../DefaultTransportService.java,
# common/proto/.../adaptor/JsonConverter.java @dfe65d5): the transport stopped waiting for the
# chain, which may still hold the server-side RPC, and still forwards the chain's answer later.
TRANSPORT_TIMEOUT_REPLY: dict[str, Any] = {"error": "timeout"}


class RpcTimeline(BaseModel):
    """The worker's copy of ThingsBoard's RPC numbers; ``tests/emulator/test_deploy_artefacts.py``
    holds the defaults to the shipped chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # timeoutInSeconds of the chain's "RPC to motor" node: how long the server-side RPC is pending.
    chain_timeout_s: int = Field(default=20, ge=1)
    # The server's CLIENT_SIDE_RPC_TIMEOUT (milliseconds there): when the transport answers "timeout".
    client_timeout_s: float = Field(default=60.0, gt=0)
    # Slack on ThingsBoard's own bounds, for its queue hops and scheduling.
    margin_s: float = Field(default=2.0, ge=0)
    # After an answer that ended the server-side RPC (TIMEOUT, NO_ACTIVE_CONNECTION, an error from
    # the edge), the command is sent again this much later.
    retry_pause_s: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _chain_answers_before_the_transport(self) -> Self:
        chain_answer_s = self.chain_timeout_s + RULE_ENGINE_GRACE_S + self.margin_s
        if self.client_timeout_s <= chain_answer_s:
            raise ValueError(
                f"client_timeout_s ({self.client_timeout_s}) must exceed chain_timeout_s + "
                f"{RULE_ENGINE_GRACE_S} + margin_s ({chain_answer_s}): otherwise ThingsBoard's transport "
                "gives up before the chain can say TIMEOUT or NO_ACTIVE_CONNECTION"
            )
        return self

    @property
    def attempt_lifetime_s(self) -> float:
        """From a send until no server-side RPC of it can be pending: the chain reaches its RPC node
        before the transport gives up (else the transport's timeout already failed every client),
        and the node holds the RPC ``chain_timeout_s`` from then."""
        return self.client_timeout_s + self.chain_timeout_s + self.margin_s
