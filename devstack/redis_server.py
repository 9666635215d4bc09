"""A real redis-server child process on a free port, for tests, benchmarks and the local stack."""

from __future__ import annotations

from pathlib import Path

from devstack.processes import LocalServer, installed


class RedisServerError(RuntimeError):
    pass


class RedisServer(LocalServer):
    """One redis-server; ``appendonly`` keeps its data across ``restart()`` like a production node.

    ``stop()`` is SIGTERM, on which Redis flushes its AOF; ``kill()`` is kill -9.
    """

    error = RedisServerError

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        data_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__("redis", port, data_dir)
        self.appendonly = appendonly
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            installed("redis-server", RedisServerError),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "no",
            *self.extra_args,
        ]  # fmt: skip
