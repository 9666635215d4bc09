"""giftwheel services as real child processes: own process group, log file, kill -9, restart.

The demo, the chaos test and the end-to-end benchmark run every component this way, so a crash
is a real SIGKILL of a real process, exactly what production sees.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from devstack.ports import free_port, port_open


def giftwheel_argv(*args: str) -> list[str]:
    """The `giftwheel` command with this interpreter (works without the venv's bin on PATH)."""
    return [sys.executable, "-m", "giftwheel.cli", *args]


class ProcessFailed(RuntimeError):
    pass


def installed(program: str, error: type[Exception], package: str = "", also: Path | None = None) -> str:
    """The path of a program ./scripts/setup installs from Debian's ``package`` (``also``: where
    Debian puts it outside a user's PATH); ``error`` names what is missing."""
    found = shutil.which(program) or (str(also) if also is not None and also.exists() else None)
    if found is None:
        raise error(f"{program} not found; run ./scripts/setup (it installs Debian's {package or program})")
    return found


class Harness(ABC):
    """Started on entering a ``with`` block, closed on leaving it, and closed when it fails to start
    (a half-started harness must not leave a child process or a temporary directory behind)."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ManagedProcess(Harness):
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env or {}
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self._ready = ready
        self._stop_signal = stop_signal
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> Self:
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                # Unbuffered: a kill -9 must not take the last log lines with it.
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # children (uvicorn workers, the gateway) die with it
            )
        deadline = time.monotonic() + timeout_s
        # A redis-server is ready within milliseconds and tests start hundreds: look again after
        # 5 ms, backing off to 50 ms for the services that take seconds.
        interval_s = 0.005
        while self._ready is not None and not self._ready():
            if self._proc.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ProcessFailed(f"{self.name} not ready within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(interval_s)
            interval_s = min(interval_s * 2, 0.05)
        return self

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """The service's own clean shutdown; SIGKILL if it does not finish in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal(self._stop_signal)
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        # Reap what the group left (a uvicorn worker, a gateway thread's child), if anything.
        self._signal(signal.SIGKILL)
        code = self._proc.returncode
        self._proc = None
        return code

    def kill(self) -> None:
        """kill -9 of the whole process group: a crash or a power cut, not a shutdown."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None

    def restart(self, timeout_s: float = 30.0) -> Self:
        self.stop()
        return self.start(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop it; subclasses also release what they hold (a temporary directory)."""
        self.stop()


class LocalServer(ManagedProcess):
    """A third-party server on a free loopback port, with a directory of its own (a temporary one
    unless given); ``start()`` runs ``command()`` and raises ``error`` when it does not come up."""

    error: type[RuntimeError] = ProcessFailed

    def __init__(
        self,
        kind: str,
        port: int | None = None,
        workdir: Path | None = None,
        ready: Callable[[], bool] | None = None,  # by default: the port accepts connections
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"giftwheel-{kind}-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        super().__init__(
            f"{kind}-{self.port}",
            [],
            log_dir=workdir,
            ready=ready or (lambda: port_open(self.host, self.port)),
        )

    @abstractmethod
    def command(self) -> list[str]:
        """The argv to run, after writing the files it reads: built at start, so a caller may still
        change what goes into it."""

    def start(self, timeout_s: float = 10.0) -> Self:
        self.argv = self.command()
        try:
            return super().start(timeout_s)
        except ProcessFailed as exc:
            raise self.error(str(exc)) from None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
