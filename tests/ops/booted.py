"""Boots a root with systemd as PID 1 in systemd-nspawn, so units run as they would on the Pi."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class BootError(RuntimeError):
    """The container itself did not come up (a limit of this machine, not of our units)."""


def _cgroup_v2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


class BootedRoot:
    def __init__(self, root: Path, log_path: Path) -> None:
        self.root = root.resolve()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def start(self, timeout_s: float = 60.0) -> Self:
        try:
            return self._boot(timeout_s)
        except BaseException:
            self.stop(timeout_s=5)
            raise

    def _boot(self, timeout_s: float) -> Self:
        nspawn = shutil.which("systemd-nspawn")
        if nspawn is None:
            raise BootError("systemd-nspawn is missing (Debian package systemd-container)")
        env = dict(os.environ)
        if not _cgroup_v2():  # a cgroup v1 host (e.g. some Docker setups) needs the legacy layout
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "0"
        with self.log_path.open("wb") as log:
            # The host's network namespace is shared: the container reaches 127.0.0.1 services.
            self.proc = subprocess.Popen(
                [nspawn, "--quiet", "--register=no", "--keep-unit", "--boot", "--console=passive",
                 f"--directory={self.root}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError(f"systemd-nspawn exited {self.proc.returncode}: {self.log[-2000:]}")
            self.leader = self._find_leader()
            if self.leader is not None:
                state = self.run("systemctl", "is-system-running").stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.2)
        raise BootError(f"the container did not finish booting in {timeout_s} s: {self.log[-2000:]}")

    def _find_leader(self) -> int | None:
        """The container's PID 1 seen from the host: nspawn's child whose pid in its namespace is 1."""
        assert self.proc is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            nspid = fields.get("NSpid", "").split()
            if fields.get("PPid", "").strip() == str(self.proc.pid) and len(nspid) > 1 and nspid[-1] == "1":
                return int(entry.name)
        return None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(self, *argv: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        assert self.leader is not None
        return subprocess.run(
            ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--pid", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Power the container off; failing that, kill its PID 1 (which takes every process in it
        along) and nspawn. Killing only nspawn would leave the container running."""
        if self.proc is None:
            return
        leader = self.leader or self._find_leader()
        if self.proc.poll() is None and leader is not None:
            self.leader = leader
            self.run("systemctl", "poweroff", "--no-block")
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            if leader is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
