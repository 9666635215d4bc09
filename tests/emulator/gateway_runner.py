"""Runs the real thingsboard-gateway service with a minimal connector, as a child process of a test.

``python -m tests.emulator.gateway_runner HOST PORT TOKEN WORKDIR [SENSOR_BROKER_PORT]``. The gateway
runs as the edge daemon runs it (:mod:`edge.gateway_host`: its config files, its start), with a
connector that announces ``motor_01`` (type motor) with heartbeat telemetry and answers every RPC at
once with ``{"accepted": true, "commandId", "queuedRounds"}``. With a broker port, the gateway's own
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

from edge.gateway_host import run_gateway, write_gateway_files
from edge.settings import parse_settings


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
    """The edge daemon's gateway files for one motor, plus the sensor connector if asked for."""
    settings = parse_settings(
        {
            "thingsboard": {"host": host, "port": port, "access_token": token},
            "state_dir": str(workdir),
            "gateway_log_level": "INFO",
            "motors": [
                {
                    "name": "motor_01",
                    "driver": "a4988",
                    "pins": {"step": 17, "dir": 27},
                    "steps_per_round": 200,
                    "max_step_rate_sps": 1000.0,
                    "acceleration_sps2": 10000.0,
                }
            ],
        }
    )
    main = write_gateway_files(settings)
    if sensor_broker_port is not None:
        (main.parent / "sensors.json").write_text(json.dumps(sensor_connector_config(sensor_broker_port)))
        config = json.loads(main.read_text())
        config["connectors"].append({"type": "mqtt", "name": "Sensors", "configuration": "sensors.json"})
        main.write_text(json.dumps(config))
    return main


def main() -> None:
    host, port, token, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    sensor_broker_port = int(sys.argv[5]) if len(sys.argv) > 5 else None
    run_gateway(write_config(host, port, token, workdir, sensor_broker_port), EchoMotorConnector)


if __name__ == "__main__":
    main()
