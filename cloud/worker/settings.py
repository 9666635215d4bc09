"""The worker process's settings (``GIFTWHEEL_WORKER__*`` and what it shares with the API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import NoDecode

from cloud.settings_env import StrictSection, split_csv
from cloud.settings_shared import LedgerSettings, SharedSettings
from cloud.worker.rpc_timeline import RpcTimeline


class MqttSettings(StrictSection):
    """How the worker reaches ThingsBoard's MQTT transport as its own ``dispatcher`` device."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # This worker's own dispatcher device's access token (ThingsBoard reads it from the MQTT username)
    # ... or a pool of them (comma-separated in the environment), of which the worker claims a free
    # one. ThingsBoard keeps one session per device: no two workers may share a token, and a Redis
    # lease per token (cloud/worker/token_lease.py) makes a shared one a startup error.
    access_token: SecretStr = SecretStr("")
    access_tokens: Annotated[list[SecretStr], NoDecode, BeforeValidator(split_csv)] = []
    # The claim expires this long after the last renewal (a killed worker's token is free again) ...
    token_lease_ttl_ms: int = Field(default=10_000, ge=300)
    # ... and a starting worker waits this long for a token to come free before it gives up.
    token_claim_wait_s: float = Field(default=15.0, ge=0)
    # A session ThingsBoard closes within this long of a good connect, this many times in a row,
    # means another client uses this token (outside our Redis, where only ThingsBoard can tell).
    takeover_window_s: float = Field(default=30.0, gt=0)
    takeover_alarm_after: int = Field(default=3, ge=1)
    # Prefix of the MQTT client id; each worker appends its own id (brokers drop duplicate ids).
    client_id: str = "giftwheel-dispatcher"
    keepalive_s: int = Field(default=30, ge=5, le=600)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    # How long a PUBLISH may wait for its PUBACK before the connection is presumed dead.
    puback_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_min_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_kind_of_token(self) -> Self:
        if self.access_token.get_secret_value() and self.access_tokens:
            raise ValueError("set access_token (this worker's own) or access_tokens (a pool), not both")
        tokens = self.tokens()
        if len(set(tokens)) != len(tokens):
            raise ValueError("access_tokens lists a token twice")
        return self

    def tokens(self) -> list[str]:
        """The tokens this worker may claim: its own, or the pool."""
        own = self.access_token.get_secret_value()
        return [own] if own else [t.get_secret_value() for t in self.access_tokens]


class LimitSettings(StrictSection):
    """Rate limits and cooldowns: 0 switches a limit off. Gifts over a limit are skipped, recorded."""

    user_max_gifts: int = Field(default=0, ge=0)
    user_window_s: int = Field(default=60, ge=1)
    user_cooldown_s: float = Field(default=0.0, ge=0)
    global_max_gifts_per_s: int = Field(default=0, ge=0)


class ControlSettings(StrictSection):
    """How a worker carries out operators' control requests (stop, hold, resume, cancel)."""

    # How long one control RPC (hold, resume, stop) waits for the edge's answer through ThingsBoard:
    # past the chain's own timeout (RpcTimeline.chain_timeout_s), after which it answers TIMEOUT.
    rpc_wait_s: float = Field(default=25.0, gt=0)
    # A request pending this long with a worker is taken over by another (its worker died). A stop
    # waits for two RPCs in a row, so this stays above twice rpc_wait_s.
    claim_idle_ms: int = Field(default=60_000, ge=1)
    read_block_ms: int = Field(default=1_000, ge=1)
    # The outcome waits this long for the API to take it; a request delivered again within it is
    # acknowledged without being carried out twice.
    result_ttl_s: int = Field(default=3_600, ge=60)
    # A request carried out (acknowledged) stays in the control stream this long, then goes, to
    # keep the stream from growing for ever; one not acknowledged (pending, or not read yet) stays
    # whatever its age (cloud/stream_trim.py). Every action is in the audit stream besides.
    retention_s: float = Field(default=86_400, ge=0)
    # How often each worker trims it.
    trim_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _claim_after_a_stop(self) -> Self:
        if self.claim_idle_ms <= 2 * self.rpc_wait_s * 1000:
            raise ValueError("claim_idle_ms must exceed twice rpc_wait_s (a stop waits for two RPCs)")
        return self


class ReconcileSettings(StrictSection):
    """How the workers bring a motor that missed a hold or a resume back to the cloud's holds."""

    # How often the motors' reported states are compared with the holds.
    interval_s: float = Field(default=2.0, gt=0)
    # A mismatch is acted on once it has lasted this long: a control request's own RPCs, sent
    # right after it changes the holds, land first.
    settle_s: float = Field(default=5.0, ge=0)
    # At most one hold or resume per motor this often, whichever worker sends it.
    min_interval_s: float = Field(default=30.0, gt=0)
    # Only motors heard from this recently are judged (the edge's heartbeat is every 60 s by
    # default); one offline reports its state when it reconnects.
    fresh_within_s: float = Field(default=150.0, gt=0)
    # One worker reconciles at a time; its lease lapses this long after it stops renewing it.
    lease_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlives_a_pass(self) -> Self:
        if self.lease_s <= 2 * self.interval_s:
            raise ValueError("lease_s must exceed twice interval_s (renewed every pass)")
        return self


class WorkerSettings(LedgerSettings):
    rules_file: Path | None = None
    # How often the rules file's mtime is checked (SIGHUP reloads at once as well).
    rules_poll_interval_s: float = Field(default=1.0, gt=0)
    batch_max_entries: int = Field(default=1_000, ge=1, le=100_000)
    read_block_ms: int = Field(default=1_000, ge=1)
    # While a shard is busy its reads are at least this far apart (a lone gift is read at once), so
    # gifts arriving together become one command per device: docs/benchmarks.md, "End to end".
    gather_ms: int = Field(default=10, ge=0, le=1_000)
    # Entries pending this long with a consumer that lost its shard are taken over.
    claim_idle_ms: int = Field(default=3_000, ge=0)
    # A shard is owned by one worker at a time; an owner that stops renewing loses it after this.
    lease_ttl_ms: int = Field(default=3_000, ge=200)
    # A worker that cannot reach ThingsBoard this long hands its shards to workers that can (0 = never).
    release_shards_after_s: float = Field(default=30.0, ge=0)
    # After this many deliveries an entry goes to the dead-letter stream (with the reason).
    max_deliveries: int = Field(default=5, ge=1)
    # ThingsBoard's RPC numbers: when a sent command is sent again (cloud/worker/rpc_timeline.py) ...
    rpc: RpcTimeline = RpcTimeline()
    # ... at most this many sends in all; then it is marked failed (visible in the ledger).
    command_max_attempts: int = Field(default=3, ge=1)
    # A delivered command whose completion feedback never comes is marked failed after this (0 = never).
    command_done_timeout_s: float = Field(default=3_600.0, ge=0)
    # Until then, a delivered command without its done is asked after this long after its delivery
    # (0 = never), then each time as long again as it has waited (60, 120, 240 s...): its edge
    # answers where it stands and sends a finished one's done again, which repairs a done report
    # lost upstream (a webhook ThingsBoard gave up on) whatever the heartbeats still carry. One RPC
    # per such command each time: a command queued behind a long queue is asked a few times until
    # it turns.
    command_done_check_s: float = Field(default=60.0, ge=0)
    sweep_interval_s: float = Field(default=1.0, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Liveness for a supervisor that cannot take systemd's watchdog pings (a container health check):
    # while the worker's loops turn, this file's mtime is renewed every alive_interval_s, and
    # `giftwheel worker alive` fails once it is older than alive_max_age_s. None: no file.
    alive_file: Path | None = None
    alive_interval_s: float = Field(default=5.0, gt=0)
    alive_max_age_s: float = Field(default=30.0, gt=0)
    mqtt: MqttSettings = MqttSettings()
    limits: LimitSettings = LimitSettings()
    control: ControlSettings = ControlSettings()
    reconcile: ReconcileSettings = ReconcileSettings()

    @model_validator(mode="after")
    def _alive_file_renewed_in_time(self) -> Self:
        if self.alive_max_age_s <= 2 * self.alive_interval_s:
            raise ValueError(
                "alive_max_age_s must exceed twice alive_interval_s (one late renewal is no death)"
            )
        return self


class WorkerProcessSettings(SharedSettings):
    worker: WorkerSettings = WorkerSettings()
