"""The settings both sides of the cloud read: Redis, the queue's shape and how long the ledger keeps.

The API's own settings are in cloud/api/settings.py, the worker's in cloud/worker/settings.py;
cloud/settings.py composes them for a process that starts (both read one environment).
"""

from __future__ import annotations

from pydantic import Field

from cloud.settings_env import StrictEnvSettings, StrictSection
from giftwheel.contracts.streams import MAX_STREAM_SHARDS


class RedisSettings(StrictSection):
    cluster: bool = False
    connect_timeout_s: float = Field(default=1.0, gt=0)
    socket_timeout_s: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=64, ge=1)


class QueueSettings(StrictSection):
    """The gift queue's shape (``GIFTWHEEL_INGEST__*``): the API writes it, the workers read it."""

    dedupe_ttl_s: int = Field(default=86_400, ge=60)
    stream_shards: int = Field(default=1, ge=1, le=MAX_STREAM_SHARDS)


class LedgerSettings(StrictSection):
    """The command ledger (``GIFTWHEEL_WORKER__*``): the workers write it, the feedback webhook too."""

    # Ledger records (commands, event assignments) outlive any redelivery or DLQ replay by this much.
    ledger_ttl_s: int = Field(default=7 * 86_400, ge=3_600)


class SharedSettings(StrictEnvSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    redis: RedisSettings = RedisSettings()
    ingest: QueueSettings = QueueSettings()
    worker: LedgerSettings = LedgerSettings()
