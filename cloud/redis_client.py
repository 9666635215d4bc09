"""One place that turns settings into asyncio Redis clients (a single node or a Redis Cluster)."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

from cloud.pipelined_redis import PipelinedRedis
from cloud.settings_shared import SharedSettings


def connect(settings: SharedSettings) -> Redis | RedisCluster:
    redis = settings.redis
    if redis.cluster:
        return RedisCluster.from_url(
            settings.redis_url,
            socket_connect_timeout=redis.connect_timeout_s,
            socket_timeout=redis.socket_timeout_s,
            max_connections=redis.max_connections,
        )
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=redis.connect_timeout_s,
        socket_timeout=redis.socket_timeout_s,
        max_connections=redis.max_connections,
    )


def connect_pipelined(settings: SharedSettings) -> PipelinedRedis | None:
    """The ingest hot path's single pipelined connection; None on a cluster (redis-py routes it)."""
    if settings.redis.cluster:
        return None
    return PipelinedRedis(
        settings.redis_url,
        connect_timeout_s=settings.redis.connect_timeout_s,
        reply_timeout_s=settings.redis.socket_timeout_s,
    )
