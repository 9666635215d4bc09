"""``giftwheel api``'s readiness and liveness for systemd (``Type=notify``, ``WatchdogSec=``).

The process systemd started asks the API it serves: READY=1 once ``GET /healthz`` answers (the app's
startup, its settings check against Redis included, is done), then WATCHDOG=1 after each answer. A
stopped process, or with one API process an event loop that no longer answers, stops the pings and
systemd restarts the unit. With ``--workers N`` this process is uvicorn's supervisor, which itself
replaces a child that dies or stops answering its health pipe (SIGSTOP included); a child whose event
loop hangs while its siblings answer is seen by neither (docs/deploy.md says so). No STOPPING=1:
the API stops only when told to (SIGTERM), and uvicorn then ends the process by that signal.
"""

from __future__ import annotations

import threading
import time

import httpx

from giftwheel import sdnotify

# Before WatchdogSec is known, or without one: how often readiness is asked for.
_READY_POLL_S = 0.2


def probe_url(host: str, port: int) -> str:
    """Where this machine reaches the API listening on ``host`` (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


class HealthProbe:
    """A thread that tells systemd what ``/healthz`` says; does nothing when systemd is not listening."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._watchdog_s = sdnotify.watchdog_interval_s()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def start(self) -> None:
        if sdnotify.notify("STATUS=starting"):  # False: no NOTIFY_SOCKET, nobody to tell
            self._thread.start()

    def _healthy(self, timeout_s: float) -> bool:
        try:
            return httpx.get(self._url, timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _run(self) -> None:
        while True:
            time.sleep(_READY_POLL_S)
            if self._healthy(timeout_s=1.0):
                sdnotify.notify(f"READY=1\nSTATUS=serving ({self._url} answers)")
                break
        if not self._watchdog_s:
            return
        period_s = self._watchdog_s / 4
        while True:  # a daemon thread: it ends with the process
            time.sleep(period_s)
            # Each answer within a quarter of WatchdogSec; a slower one is no answer.
            if self._healthy(timeout_s=period_s):
                sdnotify.notify("WATCHDOG=1")
