"""All cloud settings in one typed place (env prefix ``GIFTWHEEL_``), built once and passed in."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cloud.worker.settings import WorkerSettings
from giftwheel.contracts import GiftBounds


class IngestSettings(BaseModel):
    """Limits of the ingest endpoints; every bound a client can hit has a name here."""

    max_body_bytes: int = Field(default=16_384, ge=256)
    max_batch_events: int = Field(default=1_000, ge=1)
    max_batch_body_bytes: int = Field(default=2_097_152, ge=1_024)
    max_ws_frame_bytes: int = Field(default=2_097_152, ge=1_024)
    max_ws_inflight_frames: int = Field(default=256, ge=1)
    # How many grouped writes to Redis may be in flight at once (group commit of concurrent posts).
    max_inflight_writes: int = Field(default=4, ge=1)
    max_write_group: int = Field(default=2_000, ge=1)
    dedupe_ttl_s: int = Field(default=86_400, ge=60)
    # Unprocessed entries (consumer-group lag + pending) above which ingest answers 503.
    backlog_max: int = Field(default=1_000_000, ge=1)
    backlog_poll_interval_s: float = Field(default=0.25, gt=0)
    retry_after_s: int = Field(default=2, ge=1)
    signature_window_s: int = Field(default=300, ge=1)
    stream_shards: int = Field(default=1, ge=1, le=1024)


class RedisSettings(BaseModel):
    cluster: bool = False
    connect_timeout_s: float = Field(default=1.0, gt=0)
    socket_timeout_s: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=64, ge=1)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GIFTWHEEL_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    mode: Literal["production", "development"] = "production"
    redis_url: str = "redis://127.0.0.1:6379/0"
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    # Shared secrets for HMAC-signed webhooks from third parties (any one of them may sign).
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = []
    log_level: str = "INFO"
    bounds: GiftBounds = GiftBounds()
    ingest: IngestSettings = IngestSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()

    _split_keys = field_validator("api_keys", "webhook_secrets", mode="before")(_split_csv)

    @model_validator(mode="after")
    def _strong_keys(self) -> CloudSettings:
        short = [k for k in [*self.api_keys, *self.webhook_secrets] if len(k.get_secret_value()) < 16]
        if self.mode == "production" and short:
            raise ValueError("API keys and webhook secrets must be at least 16 characters")
        return self

    def ingest_auth_problem(self) -> str | None:
        """Why serving ingest with these settings would be an open door, or None.

        Checked where ingest is served (the API), not at load: a worker needs no API keys.
        """
        if self.mode == "production" and not self.auth_required:
            return (
                "no GIFTWHEEL_API_KEYS or GIFTWHEEL_WEBHOOK_SECRETS configured: ingest would be "
                "open to anyone; set a key, or GIFTWHEEL_MODE=development for a local run"
            )
        return None

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys or self.webhook_secrets)
