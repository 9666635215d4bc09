"""`giftwheel api` as a real child process: for kill -9 tests, multi-instance tests and the demo."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from devstack.ports import free_port
from devstack.processes import ManagedProcess, giftwheel_argv


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class ApiProcess(ManagedProcess):
    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        workers: int = 1,
        log_dir: Path | None = None,
        name: str = "api",
        max_open_files: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = giftwheel_argv("api", "--port", str(self.port), "--workers", str(workers))
        if max_open_files is not None:  # RLIMIT_NOFILE, soft and hard (util-linux's prlimit)
            argv = ["prlimit", f"--nofile={max_open_files}:{max_open_files}", "--", *argv]
        super().__init__(
            name,
            argv,
            log_dir=log_dir or Path(tempfile.mkdtemp(prefix="giftwheel-api-")),
            env=env,
            ready=lambda: _healthy(self.url),
        )
