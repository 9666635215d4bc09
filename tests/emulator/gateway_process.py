"""The real thingsboard-gateway (tests/emulator/gateway_runner.py) as a child process of a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.tb_emulator.harness import EmulatorProcess
from tests.emulator.conftest import GATEWAY_TOKEN

REPO = Path(__file__).parents[2]


@contextmanager
def gateway_process(
    emulator: EmulatorProcess, workdir: Path, *, sensor_broker_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Its log is ``workdir/gateway.log``; it runs in ``workdir``, where its connectors write their own
    log files. Stopped with SIGINT (the gateway's own clean stop), then SIGKILL if it has to be."""
    log = (workdir / "gateway.log").open("wb")
    args = [sys.executable, "-m", "tests.emulator.gateway_runner", emulator.host, str(emulator.mqtt_port),
            GATEWAY_TOKEN, str(workdir) + "/"]  # fmt: skip
    if sensor_broker_port is not None:
        args.append(str(sensor_broker_port))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
    }
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
