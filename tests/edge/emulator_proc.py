"""The ThingsBoard emulator (devstack/tb_emulator) as a child process, restartable on the same ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import yaml

from tests.edge.harness import GATEWAY_TOKEN

_LAUNCH = (
    "import argparse, sys\n"
    "from devstack.tb_emulator import cli\n"
    "parser = argparse.ArgumentParser()\n"
    "cli.register(parser)\n"
    "raise SystemExit(cli.run(parser.parse_args(sys.argv[1:])))\n"
)


class EmulatorProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.devices = workdir / "devices.yaml"
        self.devices.write_text(
            yaml.safe_dump(
                {"devices": [{"name": "pi-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True}]}
            )
        )
        self.ready = workdir / "emulator.ready"
        self.mqtt_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=30)

    def start(self, timeout_s: float = 20.0) -> Self:
        self.ready.unlink(missing_ok=True)
        args = [
            sys.executable, "-c", _LAUNCH,
            "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port),
            "--devices", str(self.devices), "--ready-file", str(self.ready), "--log-level", "WARNING",
        ]  # fmt: skip
        log = (self.workdir / "emulator.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"emulator did not start: {(self.workdir / 'emulator.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        mqtt, http = self.ready.read_text().split()
        self.mqtt_port, self.http_port = int(mqtt), int(http)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rpc(self, device: str, method: str, params: Any, timeout_ms: int = 5000) -> tuple[int, Any]:
        response = self.http.post(
            f"{self.base}/api/rpc/twoway/{device}",
            json={"method": method, "params": params, "timeout": timeout_ms},
        )
        return response.status_code, response.json()

    def timeseries(self, device: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base}/api/devices/{device}/timeseries")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def device_known(self, device: str) -> bool:
        return self.http.get(f"{self.base}/api/devices/{device}").status_code == 200

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.http.close()
