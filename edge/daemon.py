"""Entry point on the Pi: settings -> local buffer + motors -> the real thingsboard-gateway hosting our
connector; systemd readiness and watchdog; SIGTERM parks the motors and exits 0."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

import structlog

from edge.connectors.giftwheel_connector import bind
from edge.gateway_host import run_gateway, scrub_environment, write_gateway_files
from edge.runtime import EdgeRuntime
from edge.settings import EdgeSettings
from giftwheel import sdnotify

log = structlog.get_logger(__name__)


class Supervisor:
    """Tells systemd READY=1 once ThingsBoard is connected or offline mode has begun, and pings the
    watchdog only while every motor loop is ticking, so a hung loop gets the service restarted."""

    def __init__(self, runtime: EdgeRuntime, offline_ready_after_s: float) -> None:
        self._runtime = runtime
        self._offline_after_s = offline_ready_after_s
        self._watchdog_s = sdnotify.watchdog_interval_s()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self.ready = False

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        started = time.monotonic()
        period = min(1.0, self._watchdog_s / 4) if self._watchdog_s else 1.0
        max_silence = self._watchdog_s / 2 if self._watchdog_s else 10.0
        while not self._stop.wait(0 if not self.ready else period):
            if not self.ready:
                if self._runtime.thingsboard_connected():
                    self._declare_ready("connected to ThingsBoard")
                elif time.monotonic() - started >= self._offline_after_s:
                    self._declare_ready("ThingsBoard unreachable; running the local queue offline")
                else:
                    self._stop.wait(0.1)
                    continue
            if self._watchdog_s and self._runtime.motors_healthy(max_silence):
                sdnotify.notify("WATCHDOG=1")

    def _declare_ready(self, status: str) -> None:
        self.ready = True
        sdnotify.notify(f"READY=1\nSTATUS={status}")
        log.info("ready", status=status)


def _sigterm_to_sigint(signum: int, frame: FrameType | None) -> None:
    # The gateway only stops cleanly on SIGINT (its handler); systemd sends SIGTERM.
    os.kill(os.getpid(), signal.SIGINT)


def run(settings: EdgeSettings) -> int:
    scrub_environment()
    config_path = write_gateway_files(settings)
    runtime = EdgeRuntime(settings)  # raises PinBackendError for an unusable GPIO backend
    signal.signal(signal.SIGTERM, _sigterm_to_sigint)
    runtime.start()
    supervisor = Supervisor(runtime, settings.offline_ready_after_s)
    supervisor.start()
    try:
        run_gateway(config_path, bind(runtime))
    except KeyboardInterrupt:
        pass  # SIGINT before the gateway installed its own handler
    finally:
        sdnotify.notify("STOPPING=1")
        supervisor.close()
        runtime.close()
    log.info("stopped")
    return 0
