"""Runs the real thingsboard-gateway service with a minimal connector, as a child process of a test.

``python -m tests.emulator.gateway_runner HOST PORT TOKEN WORKDIR``. The connector announces
``motor_01`` (type motor) with heartbeat telemetry and answers every RPC at once with
``{"accepted": true, "commandId", "queuedRounds"}``. SIGINT stops the gateway cleanly (its own
handler); the test sends SIGINT, then SIGKILL if it has to.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from thingsboard_gateway.connectors.connector import Connector
from thingsboard_gateway.gateway import tb_gateway_service
from thingsboard_gateway.tb_utility.tb_loader import TBModuleLoader

CONNECTOR_TYPE = "emulatortest"  # not a built-in type, or the gateway ignores "class"
CONNECTOR_CLASS = "EchoMotorConnector"


class EchoMotorConnector(Connector):  # type: ignore[misc]
    def __init__(self, gateway: Any, config: dict[str, Any], connector_type: str) -> None:
        self._gateway = gateway
        self._config = config
        self._type = connector_type
        self.name = config.get("name", "Echo Motors")
        self._id = config.get("id") or "echo-motors"
        self._stop = threading.Event()
        self._beats = 0

    def open(self) -> None:
        threading.Thread(target=self._heartbeat, name="echo heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        # Data for a device the gateway has not seen makes it publish v1/gateway/connect first.
        while not self._stop.is_set():
            self._beats += 1
            data = {
                "deviceName": "motor_01",
                "deviceType": "motor",
                "telemetry": [{"heartbeat": self._beats}],
            }
            self._gateway.send_to_storage(self.name, self._id, data)
            self._stop.wait(0.5)

    def server_side_rpc_handler(self, content: dict[str, Any]) -> None:
        data = content["data"]
        params = data.get("params") or {}
        reply = {
            "accepted": True,
            "commandId": params.get("commandId"),
            "queuedRounds": params.get("rounds", 0),
        }
        self._gateway.send_rpc_reply(
            device=content["device"], req_id=data["id"], content=reply, quality_of_service=1
        )

    def on_attributes_update(self, content: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self._stop.set()

    def get_id(self) -> str:
        return str(self._id)

    def get_name(self) -> str:
        return str(self.name)

    def get_type(self) -> str:
        return self._type

    def get_config(self) -> dict[str, Any]:
        return self._config

    def is_connected(self) -> bool:
        return True

    def is_stopped(self) -> bool:
        return self._stop.is_set()


class NoUpdateCheck:
    """Stands in for TBUpdater, which would POST to updates.thingsboard.io (no internet in tests)."""

    def __init__(self) -> None:
        self._version = {"current_version": "test", "latest_version": "test"}

    def get_version(self) -> dict[str, str]:
        return self._version

    def get_platform(self) -> str:
        return ""

    def get_release(self) -> str:
        return ""

    def stop(self) -> None:
        pass


def write_config(host: str, port: int, token: str, workdir: Path) -> Path:
    config = {
        "thingsboard": {
            "host": host,
            "port": port,
            "security": {"type": "accessToken", "accessToken": token},
            "qos": 1,
            "remoteConfiguration": False,
            "remoteShell": False,
            "statistics": {"enable": False},
            "deviceFiltering": {"enable": False},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
            "handleDeviceRenaming": False,
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 10000},
        "grpc": {"enabled": False},
        "connectors": [
            {
                "type": CONNECTOR_TYPE,
                "name": "Echo Motors",
                "configuration": "echo.json",
                "class": CONNECTOR_CLASS,
            }
        ],
    }
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "gateway %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "level": "INFO"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }
    (workdir / "echo.json").write_text(json.dumps({"name": "Echo Motors"}))
    (workdir / "logs.json").write_text(json.dumps(logs))
    main = workdir / "tb_gateway.json"
    main.write_text(json.dumps(config))
    return main


def main() -> None:
    host, port, token, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    config = write_config(host, port, token, workdir)
    TBModuleLoader.LOADED_CONNECTORS[CONNECTOR_TYPE + CONNECTOR_CLASS] = EchoMotorConnector
    tb_gateway_service.TBUpdater = NoUpdateCheck
    tb_gateway_service.TBGatewayService(str(config))


if __name__ == "__main__":
    main()
