"""What a viewer sees on joining: each motor's latest progress, recent gifts and recent done events.

Any API instance may receive a webhook or an ingest call, so the state lives in Redis, not in a
process. Telemetry is merged in telemetry-ts order: the rule chain's REST calls run in parallel and
may arrive out of order, and progress must never run backwards.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from cloud.api.settings import RealtimeSettings
from cloud.control.reported import DEVICES_KEY as DEVICES_KEY
from cloud.realtime.hub import Viewer
from cloud.redis_text import as_text
from giftwheel.lua import lua_source

_MERGE = lua_source("cloud.realtime", "merge.lua")
_ALL_GIFTS = "giftwheel:rt:gifts"


def gifts_key(channel: str | None) -> str:
    return _ALL_GIFTS if channel is None else f"{_ALL_GIFTS}:{channel}"


def done_key(device: str) -> str:
    return f"giftwheel:rt:done:{device}"


def done_once_key(command_id: str) -> str:
    return f"giftwheel:rt:done-once:{command_id}"


@dataclass(frozen=True, slots=True)
class Merged:
    state: dict[str, Any]
    # False: the update was older than the stored state (a late REST call), which stays as it was.
    applied: bool


class LiveState:
    def __init__(self, redis: Redis | RedisCluster, settings: RealtimeSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._merge = redis.register_script(_MERGE)
        # A reconnect storm (every viewer after an API restart) must queue for the shared Redis
        # pool, not exhaust it and fail joins (or ingest) with "Too many connections".
        self._snapshot_gate = asyncio.Semaphore(settings.max_concurrent_snapshots)

    async def merge(
        self, device: str, update: dict[str, Any], ts_ms: int, *, latest_ms: int, if_showing: str = ""
    ) -> Merged:
        """Merge in ts order; with ``if_showing``, only while the state shows that commandId.

        ``latest_ms``: the latest ts accepted now; a stored state stamped later is taken as stale.
        """
        reply = await self._merge(
            keys=[DEVICES_KEY],
            args=[device, orjson.dumps(update), ts_ms, self._settings.state_ttl_s, if_showing, latest_ms],
        )
        return Merged(orjson.loads(reply[1]), applied=int(reply[0]) == 1)

    async def remember_gifts(self, gifts: list[dict[str, Any]]) -> None:
        keep = self._settings.recent_gifts
        by_key: dict[str, list[bytes]] = {}
        for gift in gifts:
            encoded = orjson.dumps(gift)
            by_key.setdefault(gifts_key(None), []).append(encoded)
            if isinstance(gift.get("channel"), str):
                by_key.setdefault(gifts_key(gift["channel"]), []).append(encoded)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, values in by_key.items():
                pipe.lpush(key, *values[-keep:])
                pipe.ltrim(key, 0, keep - 1)
                pipe.expire(key, self._settings.state_ttl_s)
            await pipe.execute()

    async def claim_done(self, command_id: str) -> bool:
        """True for exactly one caller per commandId (any API instance): the one that announces its
        done. ThingsBoard may deliver a done report twice, at once or later, and a heartbeat may
        report the same command finished."""
        return bool(
            await self._redis.set(done_once_key(command_id), 1, nx=True, ex=self._settings.state_ttl_s)
        )

    async def unclaim_done(self, command_id: str) -> None:
        """The claimed done could not be announced: let the chain's retry announce it."""
        await self._redis.delete(done_once_key(command_id))

    async def remember_done(self, device: str, done: dict[str, Any]) -> None:
        key = done_key(device)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, orjson.dumps(done))
            pipe.ltrim(key, 0, self._settings.recent_done - 1)
            pipe.expire(key, self._settings.state_ttl_s)
            await pipe.execute()

    async def snapshot(self, viewer: Viewer) -> dict[str, Any]:
        """The `state` event for a viewer joining now: its motors and its recent gifts, newest first."""
        async with self._snapshot_gate:
            return await self._snapshot(viewer)

    async def _snapshot(self, viewer: Viewer) -> dict[str, Any]:
        if viewer.devices:
            raw = await self._redis.hmget(DEVICES_KEY, list(viewer.devices))
            found = dict(zip(viewer.devices, raw, strict=True))
        else:
            found = {as_text(k): v for k, v in (await self._redis.hgetall(DEVICES_KEY)).items()}
        devices = [{"device": name, **orjson.loads(value)} for name, value in found.items() if value]
        keys = [gifts_key(c) for c in viewer.channels] or [gifts_key(None)]
        gifts: list[dict[str, Any]] = []
        for key in keys:
            gifts += [
                orjson.loads(g) for g in await self._redis.lrange(key, 0, self._settings.recent_gifts - 1)
            ]
        gifts.sort(key=lambda g: int(g.get("ts", 0)), reverse=True)
        done: list[dict[str, Any]] = []
        for device in sorted(found):
            done += [orjson.loads(d) for d in await self._redis.lrange(done_key(device), 0, -1)]
        done.sort(key=lambda d: int(d.get("ts", 0)), reverse=True)
        return {
            "devices": sorted(devices, key=lambda d: d["device"]),
            "gifts": gifts[: self._settings.recent_gifts],
            "done": done,
        }
