"""Runs the real thingsboard-gateway service with a minimal connector, as a child process of a test.

``python -m tests.emulator.gateway_runner HOST PORT TOKEN WORKDIR [SENSOR_BROKER_PORT]``. The
connector announces ``motor_01`` (type motor) with heartbeat telemetry and answers every RPC at once
with ``{"accepted": true, "commandId", "queuedRounds"}``. With a broker port, the gateway's own
MQTT connector runs too (:func:`sensor_connector_config`). SIGINT stops the gateway cleanly (its
own handler); the test sends SIGINT, then SIGKILL if it has to.
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


SENSOR_TOPIC = "sensors/{device}/data"  # a sensor publishes its telemetry here
SENSOR_RPC_REQUEST = "sensors/{device}/rpc/{method}/{request_id}"
SENSOR_RPC_RESPONSE = "sensors/{device}/rpc-response/{method}/{request_id}"


def sensor_connector_config(broker_port: int) -> dict[str, Any]:
    """The stock MQTT connector: each ``sensors/{device}/data`` message is that device's telemetry,
    the message as it is (``"*"``: a ``{"ts", "values"}`` message keeps its ts); a two-way RPC to
    such a device is published to its request topic and answered on its response topic."""
    return {
        "broker": {
            "host": "127.0.0.1",
            "port": broker_port,
            "clientId": "giftwheel-test-gateway",
            "version": 5,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 2,
            "security": {"type": "anonymous"},
        },
        "mapping": [
            {
                "topicFilter": SENSOR_TOPIC.format(device="+"),
                "subscriptionQos": 1,
                "converter": {
                    "type": "json",
                    "deviceInfo": {
                        "deviceNameExpressionSource": "topic",
                        "deviceNameExpression": "(?<=sensors/)(.*?)(?=/data)",
                        "deviceProfileExpressionSource": "constant",
                        "deviceProfileExpression": "thermometer",
                    },
                    "timeseries": ["*"],
                },
            }
        ],
        "serverSideRpc": [
            {
                "type": "twoWay",
                "deviceNameFilter": ".*",
                "methodFilter": ".*",
                "requestTopicExpression": SENSOR_RPC_REQUEST.format(
                    device="${deviceName}", method="${methodName}", request_id="${requestId}"
                ),
                "responseTopicExpression": SENSOR_RPC_RESPONSE.format(
                    device="${deviceName}", method="${methodName}", request_id="${requestId}"
                ),
                "responseTopicQoS": 1,
                "responseTimeout": 10000,
                "valueExpression": "${params}",
            }
        ],
    }


def write_config(
    host: str, port: int, token: str, workdir: Path, sensor_broker_port: int | None = None
) -> Path:
    config: dict[str, Any] = {
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
    if sensor_broker_port is not None:
        (workdir / "sensors.json").write_text(json.dumps(sensor_connector_config(sensor_broker_port)))
        config["connectors"].append({"type": "mqtt", "name": "Sensors", "configuration": "sensors.json"})
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
    sensor_broker_port = int(sys.argv[5]) if len(sys.argv) > 5 else None
    config = write_config(host, port, token, workdir, sensor_broker_port)
    TBModuleLoader.LOADED_CONNECTORS[CONNECTOR_TYPE + CONNECTOR_CLASS] = EchoMotorConnector
    tb_gateway_service.TBUpdater = NoUpdateCheck
    tb_gateway_service.TBGatewayService(str(config))


if __name__ == "__main__":
    main()
