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
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            name,
            giftwheel_argv("api", "--port", str(self.port), "--workers", str(workers)),
            log_dir=log_dir or Path(tempfile.mkdtemp(prefix="giftwheel-api-")),
            env=env,
            ready=lambda: _healthy(self.url),
        )
