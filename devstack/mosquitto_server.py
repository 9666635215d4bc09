"""A real Mosquitto broker as a child process on a free port, for tests that need a third-party broker
(the stock thingsboard-gateway's MQTT connector reads its sensors from one)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Self

from devstack.ports import free_port, port_open
from devstack.processes import ManagedProcess, ProcessFailed

DEBIAN_PATH = Path("/usr/sbin/mosquitto")  # Debian installs it outside a user's PATH


class MosquittoError(RuntimeError):
    pass


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (str(DEBIAN_PATH) if DEBIAN_PATH.exists() else None)
    if found is None:
        raise MosquittoError("mosquitto not found; run ./scripts/setup (it installs Debian's mosquitto)")
    return found


class MosquittoServer(ManagedProcess):
    """One broker on 127.0.0.1, anonymous access, nothing persisted; ``stop()`` is SIGTERM."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="giftwheel-mosquitto-")
        workdir = Path(self._tmp.name)
        self.config_path = workdir / "mosquitto.conf"
        super().__init__(
            f"mosquitto-{self.port}", [], log_dir=workdir, ready=lambda: port_open(self.host, self.port)
        )

    def start(self, timeout_s: float = 10.0) -> Self:
        # Mosquitto 2 listens on nothing but localhost and refuses anonymous clients unless told
        self.config_path.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\nlog_dest stdout\n"
        )
        self.argv = [mosquitto_binary(), "-c", str(self.config_path)]
        try:
            return super().start(timeout_s)
        except ProcessFailed as exc:
            raise MosquittoError(str(exc)) from None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()
