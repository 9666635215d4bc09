"""Settings every process on one Redis must share, recorded in that Redis and checked at start.

The API writes gifts to ``stream_shards`` streams and the workers read that many under one consumer
group: a process configured otherwise writes or reads other streams, and events pile up unconsumed
until ingest answers 503. The first process to start records its values (a hash, field by field
with HSETNX, so a concurrent start cannot overwrite it); every later one compares its own and
refuses to run on a difference, naming both. Changing the shard count on purpose is
``giftwheel worker reshard`` (cloud/worker/reshard.py).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from cloud.stream_backlog import stream_backlog
from giftwheel.contracts import EVENTS_STREAM, WORKER_GROUP, event_stream
from giftwheel.contracts.streams import MAX_STREAM_SHARDS
from giftwheel.lua import lua_source

AGREED_KEY = "giftwheel:agreed-settings"
MIGRATION = 'docs/operations.md, "Changing the number of stream shards" (giftwheel worker reshard)'

_RECORD = lua_source("cloud", "agreement_record.lua")


class SettingsDisagree(RuntimeError):
    """This process's settings differ from those the processes on this Redis agreed on."""


@dataclass(frozen=True)
class Agreed:
    stream_shards: int
    events_stream: str = EVENTS_STREAM
    worker_group: str = WORKER_GROUP

    def fields(self) -> dict[str, str]:
        return {
            "stream_shards": str(self.stream_shards),
            "events_stream": self.events_stream,
            "worker_group": self.worker_group,
        }


# What an operator sets for each agreed field (the stream name and group are giftwheel's own
# constants: a difference there means two giftwheel versions on one Redis).
_WHERE = {
    "stream_shards": "GIFTWHEEL_INGEST__STREAM_SHARDS",
    "events_stream": "the stream name (giftwheel.contracts.EVENTS_STREAM: another giftwheel version?)",
    "worker_group": "the consumer group (giftwheel.contracts.WORKER_GROUP: another giftwheel version?)",
}


def record_of(reply: list[object] | dict[object, object]) -> dict[str, str]:
    pairs = (
        list(reply.items()) if isinstance(reply, dict) else list(zip(reply[::2], reply[1::2], strict=True))
    )
    return {as_text(k): as_text(v) for k, v in pairs}


class Agreement:
    """One process's side of the agreement: ``check`` records its values if none are, else
    compares them, raising SettingsDisagree naming this process's value and the recorded one."""

    def __init__(self, redis: Redis | RedisCluster, agreed: Agreed, *, role: str) -> None:
        self._redis = redis
        self._record = redis.register_script(_RECORD)
        self.agreed = agreed
        self._who = f"{role} on {socket.gethostname()} (pid {os.getpid()})"

    async def check(self) -> dict[str, str]:
        if not await self._redis.exists(AGREED_KEY):
            await self._refuse_stranded_entries()
        mine = self.agreed.fields()
        args: list[str] = []
        for key, value in {**mine, "recorded_by": self._who, "recorded_at": _now()}.items():
            args += [key, value]
        record = record_of(await self._record(keys=[AGREED_KEY], args=args))
        differences = [
            f"{_WHERE[key]} is {value} here but {record[key]} in the agreed settings"
            for key, value in mine.items()
            if record.get(key) != value
        ]
        if differences:
            raise SettingsDisagree(
                "; ".join(differences)
                + f" (Redis hash {AGREED_KEY}, recorded by {record.get('recorded_by', '?')} at "
                f"{record.get('recorded_at', '?')}). Processes that disagree write and read different "
                "streams, so events would pile up unconsumed. Give every API and worker the same "
                f"value, or change it for all of them: {MIGRATION}."
            )
        return record

    async def _refuse_stranded_entries(self) -> None:
        """A Redis with no record yet may hold streams a giftwheel from before the record wrote with
        another shard count: refuse to record a count that would never read their entries."""
        shards = self.agreed.stream_shards
        outside = [event_stream(0, 1)] if shards > 1 else []
        index = shards if shards > 1 else 0
        while index < MAX_STREAM_SHARDS and await self._redis.exists(event_stream(index, MAX_STREAM_SHARDS)):
            outside.append(event_stream(index, MAX_STREAM_SHARDS))
            index += 1
        stranded = {stream: n for stream in outside if (n := await stream_backlog(self._redis, stream))}
        if stranded:
            held = ", ".join(f"{stream} {n}" for stream, n in stranded.items())
            raise SettingsDisagree(
                "no agreed settings are recorded in this Redis yet, but streams that "
                f"GIFTWHEEL_INGEST__STREAM_SHARDS={shards} does not read hold unprocessed entries "
                f"({held}): a giftwheel from before the record wrote them with another shard count. "
                "Start the APIs and workers with the count that wrote them, let the workers drain "
                f"them, then change it: {MIGRATION}."
            )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
