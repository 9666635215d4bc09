"""Hosting the real thingsboard-gateway: its config files, and what a fleet owner switches off."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.compat import tb_gateway
from edge.settings import EdgeSettings

CONNECTOR_TYPE = "giftwheel"  # lower case and not a built-in type, or the gateway ignores our class
CONNECTOR_CLASS = "GiftwheelConnector"
CONNECTOR_NAME = "giftwheel"
GATEWAY_IDLE_SEND_DELAY_MS = 1000

# The gateway merges these environment variables over its config (even bare `host`, `type`,
# `username`), so a stray one in the service environment would silently change where it connects.
_GATEWAY_ENV = (
    "host", "port", "type", "accessToken", "caCert", "privateKey", "cert", "clientId", "password",
    "username", "proxy_host", "proxy_port",
)  # fmt: skip


def scrub_environment() -> None:
    for name in list(os.environ):
        if name in _GATEWAY_ENV or (name.startswith("TB_GW_") and name != "TB_GW_LOGS_PATH"):
            del os.environ[name]


def gateway_config(settings: EdgeSettings, token: str) -> dict[str, Any]:
    tb = settings.thingsboard
    return {
        "thingsboard": {
            "host": tb.host,
            "port": tb.port,
            "security": {"type": "accessToken", "accessToken": token},
            "qos": 1,
            "keep_alive": tb.keepalive_s,
            # Remote configuration rewrites these files and has recreated the storage on reconnects
            # (thingsboard-gateway#2124, #1447); the remote shell would run commands from the cloud.
            "remoteConfiguration": False,
            "remoteShell": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "enableCustom": False},
            "deviceFiltering": {"enable": False},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "managerEnabled": False,
            # How long the gateway's sender thread sleeps when its storage is empty (its default
            # 50 ms: 20 wake-ups a second for nothing). Only the gateway's own few messages use that
            # storage, so up to 1 s for one of them costs nothing.
            "minPackSendDelayMS": GATEWAY_IDLE_SEND_DELAY_MS,
        },
        # Our telemetry goes through the Redis outbox, confirmed per publish; the gateway's own
        # storage only carries its few internal messages, so a small bounded memory queue is enough
        # and spares the SD card.
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 10_000},
        "grpc": {"enabled": False},
        "connectors": [
            {
                "type": CONNECTOR_TYPE,
                "name": CONNECTOR_NAME,
                "configuration": "giftwheel.json",
                "class": CONNECTOR_CLASS,
            }
        ],
    }


def logs_config(level: str) -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    names = ("service", "connector", "converter", "tb_connection", "storage", "database", "extension")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "gateway %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {**handler, "level": level}},
        "loggers": {name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in names},
    }


def write_gateway_files(settings: EdgeSettings) -> Path:
    """Writes the gateway's config dir under state_dir; returns the tb_gateway.json path."""
    config_dir = settings.state_dir / "gateway"
    config_dir.mkdir(parents=True, exist_ok=True)
    main = config_dir / "tb_gateway.json"
    token = settings.thingsboard.token()
    fd = os.open(main, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the access token
    with os.fdopen(fd, "w") as file:
        json.dump(gateway_config(settings, token), file, indent=2)
    (config_dir / "logs.json").write_text(json.dumps(logs_config(settings.gateway_log_level), indent=2))
    connector = {"name": CONNECTOR_NAME, "devices": [m.name for m in settings.motors]}
    (config_dir / "giftwheel.json").write_text(json.dumps(connector, indent=2))
    return main


def harden(gateway: Any) -> None:
    """Drop the gateway RPCs that pip-install a new version, restart or reboot the Pi from the cloud."""
    tb_gateway.gateway_rpc_methods(gateway).pop("update", None)
    tb_gateway.scheduled_rpc_methods(gateway).clear()


def deliver_rpcs_directly(gateway: Any, devices: set[str], handler: Callable[[dict[str, Any]], None]) -> None:
    """Hand our motors' RPCs to ``handler`` on the MQTT thread, skipping the gateway's RPC queue.

    That queue's thread polls every 100 ms when idle (``__rpc_to_devices_processing``), which was
    most of our RPC latency (p50 ~90 ms measured), and for a device it does not know yet it
    re-queues in a busy loop for 5 s. RPCs for devices that are not ours still go the gateway's
    way. ``handler`` must not block.
    """

    def around(original: tb_gateway.RpcRequestHandler) -> tb_gateway.RpcRequestHandler:
        def direct(request_id: Any, content: Any) -> None:
            if isinstance(content, dict) and content.get("device") in devices:
                data = content.get("data") or {}
                handler({**content, "id": data.get("id")})
                return
            original(request_id, content)

        return direct

    tb_gateway.replace_rpc_request_handler(gateway, around)


def run_gateway(config_path: Path, connector_class: type) -> None:
    """Runs TBGatewayService on this (main) thread until SIGINT; blocks until its first connect.
    ``connector_class`` serves the connector that :func:`gateway_config` configures."""
    tb_gateway.run_service(config_path, CONNECTOR_TYPE + CONNECTOR_CLASS, connector_class)
