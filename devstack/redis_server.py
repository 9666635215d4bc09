"""A real redis-server child process on a free port, for tests, benchmarks and the local stack."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Self

from devstack.ports import free_port, port_open
from devstack.processes import ManagedProcess, ProcessFailed


class RedisServerError(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError(
            "redis-server not found on PATH; run ./scripts/setup (it installs Debian's redis-server)"
        )
    return found


class RedisServer(ManagedProcess):
    """One redis-server; ``appendonly`` keeps its data across ``restart()`` like a production node.

    ``stop()`` is SIGTERM, on which Redis flushes its AOF; ``kill()`` is kill -9.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        data_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.appendonly = appendonly
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="giftwheel-redis-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.extra_args = extra_args
        super().__init__(
            f"redis-{self.port}", [], log_dir=data_dir, ready=lambda: port_open(self.host, self.port)
        )

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> Self:
        # Built at start, so a caller may still add arguments (a cluster node adds its own).
        self.argv = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "no",
            *self.extra_args,
        ]  # fmt: skip
        try:
            return super().start(timeout_s)
        except ProcessFailed as exc:
            raise RedisServerError(str(exc)) from None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
