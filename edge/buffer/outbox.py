"""Reading the telemetry outbox in order and deleting entries only after ThingsBoard confirmed them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from edge.buffer.connection import ThreadConnections
from edge.buffer.keys import Keys
from edge.buffer.ledger import translated_errors


@dataclass(frozen=True)
class OutboxEntry:
    entry_id: str
    device: str
    ts: int
    values: dict[str, Any]

    def as_telemetry(self) -> dict[str, Any]:
        """ThingsBoard's gateway telemetry item; the explicit ts makes a re-send overwrite, not add."""
        return {"ts": self.ts, "values": self.values}


class Outbox:
    """Entries come from the ledger's scripts in this process, which call :meth:`notify` after each
    write, so the reader waits for that instead of asking Redis over and over while nothing happens."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, connections: ThreadConnections | None = None
    ) -> None:
        self._redis = client
        self._connections = connections or ThreadConnections(client)
        self._key = (keys or Keys()).outbox
        self._written = threading.Event()

    def notify(self) -> None:
        """Something may have been appended: wakes :meth:`wait_written`."""
        self._written.set()

    def wait_written(self, timeout_s: float) -> bool:
        """Wait until :meth:`notify` (True, and the notice is taken: a later one wakes the next wait)
        or ``timeout_s`` (False). Read the outbox after it returns: what was notified is there."""
        notified = self._written.wait(timeout_s)
        self._written.clear()
        return notified

    def read(self, limit: int) -> list[OutboxEntry]:
        with translated_errors():
            rows: list[list[Any]] = self._connections.call("XRANGE", self._key, "-", "+", "COUNT", limit)
        entries = []
        for entry_id, flat in rows:
            f = dict(zip(flat[::2], flat[1::2], strict=True))
            entries.append(OutboxEntry(entry_id, f["device"], int(f["ts"]), orjson.loads(f["values"])))
        return entries

    def ack(self, entries: list[OutboxEntry]) -> None:
        if entries:
            with translated_errors():
                self._connections.call("XDEL", self._key, *[e.entry_id for e in entries])

    def __len__(self) -> int:
        with translated_errors():
            return int(self._redis.xlen(self._key))
