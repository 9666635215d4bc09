"""A real redis-server child process on a free port, for tests, benchmarks and the local stack."""

from __future__ import annotations

import socket
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
        super().__init__("redis", port, data_dir, ready=self._answers_ping)
        self.appendonly = appendonly
        self.extra_args = extra_args

    def _answers_ping(self) -> bool:
        # Redis accepts connections while it loads its AOF and answers -LOADING until done: a
        # restarted server is ready when PING gets any other answer (+PONG, or -NOAUTH where a
        # password is set), not when the port opens.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(16)
                return bool(reply) and not reply.startswith(b"-LOADING")
        except OSError:
            return False

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
