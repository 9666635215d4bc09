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
from edge.errors import ConfigError
from edge.gateway_host import run_gateway, scrub_environment, write_gateway_files
from edge.runtime import EdgeRuntime
from edge.settings import EdgeSettings
from giftwheel import sdnotify

log = structlog.get_logger(__name__)


class Supervisor:
    """What systemd hears. READY=1 once the local Redis answers and ThingsBoard is connected (or
    offline mode has begun); STATUS= follows both as they change, and names held motors; WATCHDOG=1
    only while every motor loop ticks and the local Redis has not been gone for longer than
    ``buffer_outage_restart_s``, so a hung loop or a buffer that stays away gets the service
    restarted."""

    def __init__(
        self, runtime: EdgeRuntime, offline_ready_after_s: float, buffer_outage_restart_s: float
    ) -> None:
        self._runtime = runtime
        self._offline_after_s = offline_ready_after_s
        self._outage_restart_s = buffer_outage_restart_s
        self._watchdog_s = sdnotify.watchdog_interval_s()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self.ready = False
        self.status = ""

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        started = time.monotonic()
        buffer_lost_at: float | None = None
        period = min(1.0, self._watchdog_s / 4) if self._watchdog_s else 1.0
        max_silence = self._watchdog_s / 2 if self._watchdog_s else 10.0
        while not self._stop.wait(period if self.ready else 0.1):
            now = time.monotonic()
            buffer_ok = self._runtime.buffer_available()
            if buffer_ok:
                buffer_lost_at = None
            elif buffer_lost_at is None:
                buffer_lost_at = now
            connected = self._runtime.thingsboard_connected()
            offline = not connected and now - started >= self._offline_after_s
            if not buffer_ok:
                status = (
                    f"local Redis {self._runtime.settings.redis_url} unreachable: "
                    "the motors can take no command"
                )
            elif connected:
                status = "connected to ThingsBoard"
            elif offline:
                status = "ThingsBoard unreachable; running the local queue offline"
            else:
                status = "connecting to ThingsBoard"
            status += self._runtime.holds()
            if not self.ready and buffer_ok and (connected or offline):
                self.ready = True
                self._tell(f"READY=1\nSTATUS={status}", status)
            elif status != self.status:
                self._tell(f"STATUS={status}", status)
            outage_s = 0.0 if buffer_lost_at is None else now - buffer_lost_at
            if (
                self.ready
                and self._watchdog_s
                and outage_s < self._outage_restart_s
                and self._runtime.motors_healthy(max_silence)
            ):
                sdnotify.notify("WATCHDOG=1")

    def _tell(self, message: str, status: str) -> None:
        self.status = status
        sdnotify.notify(message)
        log.info("ready" if message.startswith("READY=1") else "status", status=status)


def _sigterm_to_sigint(signum: int, frame: FrameType | None) -> None:
    # The gateway only stops cleanly on SIGINT (its handler); systemd sends SIGTERM.
    os.kill(os.getpid(), signal.SIGINT)


def run(settings: EdgeSettings) -> int:
    scrub_environment()
    try:
        config_path = write_gateway_files(settings)
    except OSError as exc:  # no restart fixes a missing or read-only state_dir: exit 2, one line
        raise ConfigError(
            f"state_dir: cannot write the gateway's files under {settings.state_dir}: {exc}"
        ) from exc
    runtime = EdgeRuntime(settings)  # raises PinBackendError for an unusable GPIO backend
    signal.signal(signal.SIGTERM, _sigterm_to_sigint)
    runtime.start()
    supervisor = Supervisor(runtime, settings.offline_ready_after_s, settings.buffer_outage_restart_s)
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
