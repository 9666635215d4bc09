"""The local Redis calls every command makes (the ledger's scripts, the outbox), each thread on a
connection of its own.

redis-py's client checks a connection out of its pool and back in, wraps each call in its retry and
metrics layers and re-resolves the script: ~30 us of CPU per call on the 2-core test box, before the
round trip itself, and a command makes several. The edge's threads each make one call at a time, so
a connection per thread needs no pool, no lock and no check-out. hiredis packs the command in C,
where redis-py's packer builds it in Python (~11 us of ~38 us of CPU per script call measured).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class _Connection(Protocol):
    """What this uses of redis-py's Connection (its methods carry no type hints)."""

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def disconnect(self) -> None: ...

    def can_read(self) -> bool: ...


class ThreadConnections:
    """Connections made from ``client``'s settings (address, timeouts, decoding), one per thread
    that calls, opened on its first call. A connection that Redis closed while it sat idle is
    replaced before the call; a call that fails on the wire raises (the callers' retry decides)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()
        self._opened: list[_Connection] = []
        self._lock = threading.Lock()  # guards _opened only: each connection has one thread

    def call(self, *args: Any) -> Any:
        """One command and its reply (not parsed by redis-py's response callbacks: raw lists)."""
        conn = self._connection()
        try:
            # What redis-py's pool checks before lending a connection: readable while idle means
            # Redis closed it (a restart) or left a reply nobody read. Then a fresh one.
            stale = conn.can_read()
        except redis.ConnectionError:
            stale = True
        if stale:
            conn.disconnect()
        try:
            conn.send_packed_command([hiredis.pack_command(args)])  # connects if it is not
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # a late reply must not answer the next call
            raise

    def run_script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted Redis has no scripts cached: EVAL runs it and caches it again.
            return self.call("EVAL", script.script, len(keys), *keys, *args)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.disconnect()

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = cast(_Connection, self._pool.make_connection())
            with self._lock:
                self._opened.append(conn)
            self._local.conn = conn
        return conn
