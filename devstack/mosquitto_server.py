"""A real Mosquitto broker as a child process on a free port, for tests that need a third-party broker
(the stock thingsboard-gateway's MQTT connector reads its sensors from one)."""

from __future__ import annotations

from pathlib import Path

from devstack.processes import LocalServer, installed


class MosquittoError(RuntimeError):
    pass


class MosquittoServer(LocalServer):
    """One broker on 127.0.0.1, anonymous access, nothing persisted; ``stop()`` is SIGTERM."""

    error = MosquittoError

    def __init__(self, port: int | None = None) -> None:
        super().__init__("mosquitto", port)

    def command(self) -> list[str]:
        # Mosquitto 2 listens on nothing but localhost and refuses anonymous clients unless told
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\nlog_dest stdout\n"
        )
        # Debian installs it outside a user's PATH
        return [installed("mosquitto", MosquittoError, also=Path("/usr/sbin/mosquitto")), "-c", str(config)]
