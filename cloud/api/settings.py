"""The API process's settings (ingest, feedback, realtime, its HTTP edge), built once and passed in."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from cloud.console.passwords import BadPasswordHash, parse_hash
from cloud.settings_env import StrictSection, split_csv
from cloud.settings_shared import QueueSettings, SharedSettings
from giftwheel.contracts import GiftBounds


class IngestSettings(QueueSettings):
    """Limits of the ingest endpoints; every bound a client can hit has a name here."""

    max_body_bytes: int = Field(default=16_384, ge=256)
    max_batch_events: int = Field(default=1_000, ge=1)
    max_batch_body_bytes: int = Field(default=2_097_152, ge=1_024)
    max_ws_frame_bytes: int = Field(default=2_097_152, ge=1_024)
    max_ws_inflight_frames: int = Field(default=256, ge=1)
    # Acks (bytes) written for a WebSocket ingest client but not yet taken by its socket: past this
    # the API reads no further frame from it until it reads its acks (TCP backpressure on the sender).
    max_ws_pending_ack_bytes: int = Field(default=1_048_576, ge=1_024)
    # How many grouped writes to Redis may be in flight at once (group commit of concurrent posts).
    # One measured best (bench.ingest, single posts, 64 connections): events that wait for the
    # write under way go together in the next, and every write costs a task and a round trip.
    max_inflight_writes: int = Field(default=1, ge=1)
    max_write_group: int = Field(default=2_000, ge=1)
    # Unprocessed entries (consumer-group lag + pending) above which ingest answers 503.
    backlog_max: int = Field(default=1_000_000, ge=1)
    backlog_poll_interval_s: float = Field(default=0.25, gt=0)
    retry_after_s: int = Field(default=2, ge=1)
    signature_window_s: int = Field(default=300, ge=1)


class FeedbackSettings(StrictSection):
    """The ThingsBoard feedback webhook (the rule chain's REST API call node posts telemetry here)."""

    # The value the chain sends in X-Giftwheel-Secret; without it the webhook refuses every call.
    secret: SecretStr | None = None
    max_body_bytes: int = Field(default=16_384, ge=256)
    # A telemetry ts further ahead of this server's clock is counted and replaced by the server's
    # time: kept, it would outrank every later update (merged newest ts first) and freeze the motor.
    max_ts_ahead_s: float = Field(default=10.0, ge=0)


class MetricsSettings(StrictSection):
    """Who may read GET /metrics: it tells anyone the traffic, the backlog and the motors' names."""

    # Scrapers send it as Authorization: Bearer <token>. Without one, /metrics answers only in
    # development mode (in production it refuses every scrape and says what to set).
    token: SecretStr | None = None


class RealtimeSettings(StrictSection):
    """Fan-out of gifts and motor progress to viewers (Socket.IO and plain WebSocket)."""

    # Browser origins allowed to connect: [] = same origin only, ["*"] = any. Clients that send no
    # Origin header (not browsers) are always let in.
    allowed_origins: list[str] = []
    max_connections: int = Field(default=20_000, ge=1)
    max_rooms_per_viewer: int = Field(default=16, ge=1)
    # Per viewer: progress updates kept while it is slow (older ones dropped first) ...
    max_pending_progress: int = Field(default=64, ge=1)
    # ... and gifts/done events, which are never dropped: past this the viewer is disconnected (it
    # gets the current state again when it reconnects).
    max_pending_events: int = Field(default=2_000, ge=1)
    # Gifts accepted by ingest are announced to viewers at most this fast (per API process); the
    # newest max_pending_announcements wait, older ones are dropped (the queue keeps them all).
    # Announcements are never dropped at a viewer, and a queued one is a message of its own, so
    # the cap is set by what a slow viewer's queue (max_pending_events) and an overlay can take,
    # not by the gift rate: an overlay shows a few recent gifts.
    announce_max_per_s: int = Field(default=50, ge=1)
    # The gifts waiting are announced together, at most once per interval: one bus message per
    # channel and, on a plain WebSocket, one frame per viewer, whatever the number of gifts.
    announce_interval_s: float = Field(default=0.2, ge=0, le=5)
    # motor.progress is published at most once per interval (per API process): updates in between
    # wait, merged to the newest per device, and go out together, so viewers get a bounded number
    # of frames however many motors turn. Done events are never held back. 0: every update at once.
    progress_publish_interval_s: float = Field(default=0.2, ge=0, le=5)
    max_pending_announcements: int = Field(default=1_000, ge=1)
    recent_gifts: int = Field(default=20, ge=1, le=500)
    # Done events kept per device for the join state, so a viewer that reconnects (an API restart,
    # a network blip) learns which commands finished while it was away.
    recent_done: int = Field(default=100, ge=1, le=1_000)
    # Joins read the current state from Redis at most this many at a time (per API process).
    max_concurrent_snapshots: int = Field(default=16, ge=1)
    state_ttl_s: int = Field(default=86_400, ge=60)
    redis_channel: str = "giftwheel:realtime"
    # WebSocket compression (permessage-deflate), for every WebSocket the API serves (the ingest
    # socket too). Browsers ask for it; granted, each connection holds its own zlib compressor and
    # every frame is compressed once per viewer, for JSON frames of a few hundred bytes. Off by
    # default for large viewer fleets (docs/benchmarks.md, "realtime fan-out", has the costs).
    permessage_deflate: bool = False
    # Largest engine.io long-polling POST body (engine.io's max_http_buffer_size, announced to clients
    # as maxPayload): a POST declaring more is answered 413, one declaring no length 411.
    max_polling_body_bytes: int = Field(default=1_000_000, ge=1_024)
    # Messages a viewer may send on /v1/realtime, and Socket.IO packets other than CONNECT or
    # DISCONNECT (viewers only listen): at this many the connection or session is closed. Each one
    # is counted, none is logged whole.
    max_bad_packets: int = Field(default=10, ge=1)


class HttpSettings(StrictSection):
    """The API's public edge, per process: what a client may hold open, and for how long."""

    # From a connection's first byte (or the end of its previous request) to the end of the request
    # line and headers; past it the connection gets 408 and is closed (idle and slow-header clients).
    header_timeout_s: float = Field(default=10.0, gt=0)
    # From the end of the headers to the end of the body, whatever the rate it trickles in at.
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Request line plus headers; past it the request gets 431 and the connection is closed.
    max_header_bytes: int = Field(default=32_768, ge=1_024)
    # Open connections (HTTP and WebSocket) per process. Past it a connection is still read, up to
    # reserve_connections more, so /healthz and /readyz answer; any other request gets 503 with
    # Retry-After. Past both, a new connection is closed at once. Both together are kept below the
    # process's open-file limit (RLIMIT_NOFILE, raised to its hard limit at start if need be).
    max_connections: int = Field(default=25_000, ge=1)
    reserve_connections: int = Field(default=64, ge=1)
    busy_retry_after_s: int = Field(default=5, ge=1)
    # After a refusal (408, 431, 400) the API reads and drops what the client still sends for this
    # long before it closes, so that a client busy uploading can read the answer (closing on unread
    # data resets the connection, which can discard the answer before the client reads it).
    refusal_linger_s: float = Field(default=2.0, ge=0)
    # Client mistakes (timeouts, oversized or malformed requests, junk packets) are each counted
    # (giftwheel_api_client_errors_total) but logged at most this many times a minute per process.
    client_error_logs_per_min: int = Field(default=60, ge=1)


class FleetStatusSettings(StrictSection):
    """How the fleet's status is read (``GIFTWHEEL_CONSOLE__STATUS__*``): the page, ``ctl status``."""

    # A motor is offline once its last telemetry is older than this. The edge sends a heartbeat
    # every heartbeat_interval_s (60 s by default) besides every change, so two missed heartbeats
    # and a margin. Telemetry times are the Pi's clock, bounded by the server's.
    offline_after_s: float = Field(default=150.0, gt=0)
    # The ingest rate is counted over at least this long (between two reads of the status).
    ingest_window_s: float = Field(default=10.0, gt=0)
    # Samples of the entries-added count kept for that: reads more often than the window
    # pushes older samples out.
    ingest_samples: int = Field(default=64, ge=2, le=10_000)


class ConsoleSettings(StrictSection):
    """The control room (/console and ``giftwheel ctl``): its operators and what guards their sessions."""

    # Operator name -> password hash (``giftwheel ctl hash-password`` prints one); never a password.
    # Empty by default: the console refuses every login until an operator is configured.
    operators: dict[str, SecretStr] = {}
    # A session ends this long after its login, whatever it does meanwhile.
    session_ttl_s: int = Field(default=8 * 3600, ge=1)
    # Failed logins per client address within login_window_s; past it logins get 429 until the
    # window ends (a correct password too, so guessing gains nothing).
    login_failures_max: int = Field(default=5, ge=1)
    login_window_s: int = Field(default=300, ge=1)
    # Entries the audit stream keeps (XADD MAXLEN ~): the newest actions, months of them.
    audit_max_entries: int = Field(default=100_000, ge=100)
    # Entries GET /v1/console/audit and GET /v1/console/dlq return at most per call.
    list_max: int = Field(default=200, ge=1, le=10_000)
    # Largest rules YAML an operator may upload.
    rules_max_bytes: int = Field(default=262_144, ge=1_024)
    status: FleetStatusSettings = FleetStatusSettings()

    @field_validator("operators")
    @classmethod
    def _hashes_only(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, stored in value.items():
            if not 1 <= len(name) <= 64 or not name.isprintable():
                raise ValueError(f"console operator name {name!r}: 1 to 64 printable characters")
            try:
                parse_hash(stored.get_secret_value())
            except BadPasswordHash as exc:
                raise ValueError(f"console operator {name!r}: {exc}") from None
        return value


class ApiSettings(SharedSettings):
    """The API process's settings: ingest, the feedback webhook, the viewers' fan-out, its HTTP edge."""

    mode: Literal["production", "development"] = "production"
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    # Shared secrets for HMAC-signed webhooks from third parties (any one of them may sign).
    webhook_secrets: Annotated[list[SecretStr], NoDecode] = []
    # Peers whose X-Forwarded-For and X-Forwarded-Proto the API believes (addresses or networks): the
    # reverse proxy in front of it (deploy/nginx). Anyone else's claim is ignored and its own address
    # is the client's; [] believes no one. The default is a proxy on the same host.
    trusted_proxies: Annotated[list[str], NoDecode] = ["127.0.0.1", "::1"]
    # A stopping process waits at most this long for writes under way and its clients to close.
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    # How long a control request (stop, hold, resume, cancel) waits for a worker's outcome before the
    # caller is told it is not confirmed yet (it stays queued and is carried out later). A motor whose
    # Pi is offline answers only when the chain's RPC expires (its timeoutInSeconds, 20 s shipped).
    control_confirm_timeout_s: float = Field(default=30.0, gt=0)
    bounds: GiftBounds = GiftBounds()
    ingest: IngestSettings = IngestSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    metrics: MetricsSettings = MetricsSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    http: HttpSettings = HttpSettings()
    console: ConsoleSettings = ConsoleSettings()

    _split_lists = field_validator("api_keys", "webhook_secrets", "trusted_proxies", mode="before")(split_csv)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _strong_keys(self) -> ApiSettings:
        keys = [*self.api_keys, *self.webhook_secrets]
        if self.feedback.secret is not None:
            keys.append(self.feedback.secret)
        if self.metrics.token is not None:
            keys.append(self.metrics.token)
        short = [k for k in keys if len(k.get_secret_value()) < 16]
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

    def feedback_auth_problem(self) -> str | None:
        """Why the feedback webhook cannot authenticate anyone with these settings, or None."""
        if self.feedback.secret is None and self.mode == "production":
            return (
                "no GIFTWHEEL_FEEDBACK__SECRET configured: the ThingsBoard feedback webhook refuses "
                "every call; set it to the secret the rule chain sends"
            )
        return None

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys or self.webhook_secrets)
