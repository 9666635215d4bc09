"""One place that turns settings into an asyncio Redis client (a single node or a Redis Cluster)."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

from cloud.settings import CloudSettings


def connect(settings: CloudSettings) -> Redis | RedisCluster:
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
