"""Settings of the gift-source processes (env prefix ``GIFTWHEEL_``), built once and passed in."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from cloud.settings_env import StrictEnvSettings, StrictSection
from giftwheel.contracts import GiftBounds


class BackoffSettings(StrictSection):
    """Exponential backoff with full jitter between ``initial_s`` and ``max_s``."""

    initial_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=60.0, gt=0)
    factor: float = Field(default=2.0, ge=1.0)


class IngestClientSettings(StrictSection):
    # Events not yet acked by the API; beyond this the source refuses new gifts loudly.
    buffer_max_events: int = Field(default=100_000, ge=1)
    # Events sent but not yet answered on one connection (a window, so acks keep pace).
    max_inflight_events: int = Field(default=2_000, ge=1)
    # Must not exceed the API's GIFTWHEEL_INGEST__MAX_BATCH_EVENTS (it refuses larger frames).
    max_frame_events: int = Field(default=500, ge=1)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    backoff: BackoffSettings = BackoffSettings(initial_s=0.5, max_s=30.0)


class StreakSettings(StrictSection):
    # A streak whose closing event never comes is settled this long after its last step.
    timeout_s: float = Field(default=15.0, gt=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    # How many settled streaks and counted messages are remembered to ignore TikTok's replays.
    remember_max: int = Field(default=50_000, ge=1)
    remember_s: float = Field(default=3_600.0, gt=0)


class SignBudgetSettings(StrictSection):
    """Connection starts allowed per window: each start is one sign-server call (Euler's limits)."""

    per_minute: int = Field(default=5, ge=1)
    per_hour: int = Field(default=30, ge=1)
    per_day: int = Field(default=120, ge=1)


class TikTokSettings(StrictSection):
    sign_url: str = "https://api.eulerstream.com"
    sign_api_key: SecretStr | None = None
    budget: SignBudgetSettings = SignBudgetSettings()
    backoff: BackoffSettings = BackoffSettings(initial_s=5.0, max_s=300.0)
    # TikTok answers "offline" for a while after a live ends; check again this often.
    offline_retry_s: float = Field(default=60.0, gt=0)


class TikFinitySettings(StrictSection):
    url: str = "ws://127.0.0.1:21213"
    backoff: BackoffSettings = BackoffSettings(initial_s=0.5, max_s=10.0)


class SourceSettings(StrictEnvSettings):
    # Unknown GIFTWHEEL_* variables are refused (StrictEnvSettings), so a source keeps its own
    # environment, apart from the API's and the workers' (docs/sources.md).

    # The ingest API: http(s)://host:port or ws(s)://host:port; the client speaks /v1/ingest.
    api_url: str = "http://127.0.0.1:8000"
    api_key: SecretStr | None = None
    log_level: str = "INFO"
    # Port of this process's Prometheus /metrics endpoint; 0 turns it off.
    metrics_port: int = Field(default=0, ge=0, le=65_535)
    # On shutdown, how long to wait for the ingest API to ack what is still held.
    shutdown_drain_s: float = Field(default=10.0, ge=0)
    bounds: GiftBounds = GiftBounds()
    ingest_client: IngestClientSettings = IngestClientSettings()
    streaks: StreakSettings = StreakSettings()
    tiktok: TikTokSettings = TikTokSettings()
    tikfinity: TikFinitySettings = TikFinitySettings()

    @field_validator("api_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with http://, https://, ws:// or wss://")
        return value.rstrip("/")

    @property
    def ingest_ws_url(self) -> str:
        base = self.api_url
        if base.startswith("http"):
            base = "ws" + base.removeprefix("http")
        return f"{base}/v1/ingest"
