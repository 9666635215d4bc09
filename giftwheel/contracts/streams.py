"""Every Redis key and stream name the cloud shares between ingest and worker, in one place.

Keys that one Lua script touches together share a Redis Cluster hash tag (a cluster runs a script
only on keys of one slot): the dedupe key of an event is ``{<stream>}:seen:<eventId>``, whose
tag is the stream's whole name, so it hashes to the same slot as the stream itself.
"""

from __future__ import annotations

import zlib

EVENTS_STREAM = "giftwheel:events"
WORKER_GROUP = "workers"
# Most stream shards a deployment may have (GIFTWHEEL_INGEST__STREAM_SHARDS): no stream is numbered past.
MAX_STREAM_SHARDS = 1024
# Field name of the JSON-encoded GiftEvent inside a stream entry.
EVENT_FIELD = "event"
# Value prefix the ingest script returns for a replayed eventId (followed by the original entry id).
DEDUPE_MARK = "dup:"


def event_stream(shard: int, shards: int) -> str:
    """Name of one ingest shard; a single-shard deployment uses the plain stream name."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} outside 0..{shards - 1}")
    return EVENTS_STREAM if shards == 1 else f"{EVENTS_STREAM}:{shard}"


def event_streams(shards: int) -> list[str]:
    return [event_stream(shard, shards) for shard in range(shards)]


def shard_of(event_id: str, shards: int) -> int:
    """Stable shard for an eventId, so every replay of an event meets its own dedupe key."""
    return zlib.crc32(event_id.encode()) % shards


def dedupe_key(stream: str, event_id: str) -> str:
    return f"{{{stream}}}:seen:{event_id}"
