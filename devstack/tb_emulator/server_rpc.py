"""A REST RPC as DefaultTbCoreDeviceRpcService sends it, for the emulator's /api/rpc paths and
ThingsBoard's /api/plugins/rpc path (rest_plugins.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from devstack.tb_emulator.convert import dumps
from devstack.tb_emulator.rpc import RpcResult
from devstack.tb_emulator.rule_engine import MsgType, TbMsg

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device
    from devstack.tb_emulator.hub import Hub


async def server_rpc(
    hub: Hub,
    target: Device,
    *,
    oneway: bool,
    method: str,
    params: Any,
    expiration_ms: int,
    persistent: bool,
    retries: int | None,
    additional_info: Any,
    request_uuid: str | None = None,
) -> RpcResult | None:
    """An RPC_CALL_FROM_SERVER_TO_DEVICE message into the target's rule chain, then the answer its
    "RPC Request to Device" path gives (None if none by a second after expiry)."""
    request_uuid = request_uuid or str(uuid.uuid4())
    metadata = {
        "deviceName": target.name,
        "deviceType": target.type,
        "requestUUID": request_uuid,
        "expirationTime": str(expiration_ms),
        "oneway": "true" if oneway else "false",
        "persistent": "true" if persistent else "false",
        "originServiceId": "tb-emulator",
    }
    if retries is not None:
        metadata["retries"] = str(retries)
    data = {"method": method, "params": params, "additionalInfo": additional_info}
    result: asyncio.Future[RpcResult] = hub.loop.create_future()
    hub.rest_rpc_waiters[request_uuid] = result
    hub.push_to_rule_engine(
        TbMsg(MsgType.RPC_CALL_FROM_SERVER_TO_DEVICE, target, dumps(data), metadata, data)
    )
    try:
        return await asyncio.wait_for(result, timeout=max(0.0, (expiration_ms - hub.now_ms()) / 1000) + 1.0)
    except TimeoutError:
        return None
    finally:
        hub.rest_rpc_waiters.pop(request_uuid, None)
