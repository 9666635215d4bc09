"""What the daemon writes for thingsboard-gateway and what it switches off."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from devstack.edge_process import GATEWAY_TOKEN, simulated_config
from edge.gateway_host import scrub_environment, write_gateway_files
from edge.settings import parse_settings


def test_gateway_files_turn_off_remote_control_and_keep_the_token_private(tmp_path: Path) -> None:
    settings = parse_settings(simulated_config(tmp_path, "redis://127.0.0.1:6379/0", 1883))
    main = write_gateway_files(settings)
    assert stat.S_IMODE(main.stat().st_mode) == 0o600
    config = json.loads(main.read_text())
    tb = config["thingsboard"]
    assert tb["security"] == {"type": "accessToken", "accessToken": GATEWAY_TOKEN}
    assert tb["qos"] == 1
    assert tb["remoteConfiguration"] is False
    assert tb["remoteShell"] is False
    assert tb["statistics"]["enable"] is False
    assert tb["minPackSendDelayMS"] == 1000  # its storage-polling thread wakes once a second, not 20 times
    assert config["grpc"]["enabled"] is False
    assert config["storage"]["type"] == "memory"
    assert config["connectors"] == [
        {
            "type": "giftwheel",
            "name": "giftwheel",
            "configuration": "giftwheel.json",
            "class": "GiftwheelConnector",
        }
    ]
    connector = json.loads((main.parent / "giftwheel.json").read_text())
    assert connector["devices"] == ["motor_01", "motor_02"]
    logs = json.loads((main.parent / "logs.json").read_text())
    assert all(h["class"] == "logging.StreamHandler" for h in logs["handlers"].values())  # no log files


def test_environment_that_would_redirect_the_gateway_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("host", "evil.example"),
        ("username", "x"),
        ("TB_GW_HOST", "evil"),
        ("TB_GW_LOGS_PATH", "/l"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_KEEP", "1")
    scrub_environment()
    assert "host" not in os.environ
    assert "username" not in os.environ
    assert "TB_GW_HOST" not in os.environ
    assert os.environ["TB_GW_LOGS_PATH"] == "/l"
    assert os.environ["HOME_KEEP"] == "1"
