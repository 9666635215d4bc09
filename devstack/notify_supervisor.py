"""systemd's side of the notify protocol and watchdog, for tests: what a unit with ``Type=notify``,
``NotifyAccess=main``, ``WatchdogSec=``, ``TimeoutAbortSec=`` and ``Restart=on-failure`` does to its
service, over a real unix datagram socket.

Test machines have no systemd to run a service under, so this plays its part as systemd.service(5)
and sd_notify(3) describe it: the service gets ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``; messages are
taken only from the main process (the sender's pid from the kernel, SCM_CREDENTIALS, as
NotifyAccess=main); READY=1 starts the watchdog; WATCHDOG=1 resets it; with no ping for WatchdogSec
the main process gets WatchdogSignal (SIGABRT) followed by SIGCONT (systemd wakes a stopped process
after its kill signal), SIGKILL after TimeoutAbortSec, and the service is started again after
RestartSec. A service that exits non-zero on its own is started again too (Restart=on-failure).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from devstack.processes import Harness, ManagedProcess

_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Happening:
    what: str  # started, ready, stopping, watchdog, killed, exited
    pid: int
    detail: str = ""


class NotifySupervisor(Harness):
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: dict[str, str],
        watchdog_s: float,
        restart_s: float,
        abort_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._log_dir = log_dir
        self._env = env
        self._watchdog_s = watchdog_s
        self._restart_s = restart_s
        self._abort_timeout_s = abort_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="notify-"))
        self.socket_path = self._dir / "notify.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.socket_path))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.settimeout(0.05)
        self.happenings: list[Happening] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._process: ManagedProcess | None = None
        self._ready = False
        self._last_ping = 0.0
        self._thread = threading.Thread(target=self._supervise, name=f"supervise-{name}", daemon=True)

    @property
    def main_pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"{self.name}.log"

    def seen(self, what: str, pid: int | None = None) -> list[Happening]:
        with self._lock:
            return [h for h in self.happenings if h.what == what and (pid is None or h.pid == pid)]

    def _note(self, what: str, pid: int, detail: str = "") -> None:
        with self._lock:
            self.happenings.append(Happening(what, pid, detail))

    def start(self) -> Self:
        self._spawn()
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop supervising, then stop the service as systemd does (SIGTERM), reading what it says."""
        self._stop.set()
        if self._thread.is_alive():  # not when it failed to start
            self._thread.join(10)
        if self._process is not None and (pid := self._process.pid) is not None:
            self._process.stop()
            while (message := self._receive()) is not None:
                self._take(pid, *message)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
            self._dir.rmdir()

    def _spawn(self) -> None:
        self._ready = False  # the watchdog runs from READY=1 on
        env = {
            **self._env,
            "NOTIFY_SOCKET": str(self.socket_path),
            "WATCHDOG_USEC": str(int(self._watchdog_s * 1_000_000)),
        }
        self._process = ManagedProcess(self.name, self._argv, log_dir=self._log_dir, env=env).start()
        assert self._process.pid is not None
        self._note("started", self._process.pid)

    def _receive(self) -> tuple[int, list[str]] | None:
        try:
            data, ancillary, _flags, _addr = self._sock.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
        except TimeoutError:
            return None
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
        return pid, data.decode(errors="replace").splitlines()

    def _take(self, pid: int, sender: int, lines: list[str]) -> None:
        if sender != pid:  # NotifyAccess=main: anyone else is ignored
            return
        for line in lines:
            if line == "READY=1":
                self._ready = True
                self._last_ping = time.monotonic()
                self._note("ready", pid)
            elif line == "WATCHDOG=1":
                self._last_ping = time.monotonic()
            elif line == "STOPPING=1":
                self._note("stopping", pid)

    def _supervise(self) -> None:
        while not self._stop.is_set():
            process = self._process
            assert process is not None
            pid = process.pid
            assert pid is not None
            if (message := self._receive()) is not None:
                self._take(pid, *message)
            if not process.running:
                code = process.stop()
                self._note("exited", pid, f"status {code}")
                if code == 0 or self._stop.wait(self._restart_s):
                    return
                self._spawn()
            elif self._ready and time.monotonic() - self._last_ping > self._watchdog_s:
                self._note("watchdog", pid, f"no WATCHDOG=1 for {self._watchdog_s:g} s")
                self._abort(process, pid)
                if self._stop.wait(self._restart_s):
                    return
                self._spawn()

    def _abort(self, process: ManagedProcess, pid: int) -> None:
        for sig in (signal.SIGABRT, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + self._abort_timeout_s
        while process.running and time.monotonic() < deadline:
            time.sleep(0.02)
        how = "SIGABRT" if not process.running else "SIGKILL after TimeoutAbortSec"
        process.kill()
        self._note("killed", pid, how)
