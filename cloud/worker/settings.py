"""The worker's settings (``GIFTWHEEL_WORKER__*``): a nested section of CloudSettings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cloud.worker.rpc_timeline import RpcTimeline


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Section):
    """How the worker reaches ThingsBoard's MQTT transport as the ``dispatcher`` device."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # The dispatcher device's access token: ThingsBoard reads it from the MQTT username.
    access_token: SecretStr = SecretStr("")
    # Prefix of the MQTT client id; each worker appends its own id (brokers drop duplicate ids).
    client_id: str = "giftwheel-dispatcher"
    keepalive_s: int = Field(default=30, ge=5, le=600)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    # How long a PUBLISH may wait for its PUBACK before the connection is presumed dead.
    puback_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_min_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)


class LimitSettings(_Section):
    """Rate limits and cooldowns: 0 switches a limit off. Gifts over a limit are skipped, recorded."""

    user_max_gifts: int = Field(default=0, ge=0)
    user_window_s: int = Field(default=60, ge=1)
    user_cooldown_s: float = Field(default=0.0, ge=0)
    global_max_gifts_per_s: int = Field(default=0, ge=0)


class WorkerSettings(_Section):
    rules_file: Path | None = None
    # How often the rules file's mtime is checked (SIGHUP reloads at once as well).
    rules_poll_interval_s: float = Field(default=1.0, gt=0)
    batch_max_entries: int = Field(default=1_000, ge=1, le=100_000)
    read_block_ms: int = Field(default=1_000, ge=1)
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
    sweep_interval_s: float = Field(default=1.0, gt=0)
    # Ledger records (commands, event assignments) outlive any redelivery or DLQ replay by this much.
    ledger_ttl_s: int = Field(default=7 * 86_400, ge=3_600)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    mqtt: MqttSettings = MqttSettings()
    limits: LimitSettings = LimitSettings()
