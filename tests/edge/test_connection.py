"""Each thread's own connection to the local Redis, against a real redis-server."""

from __future__ import annotations

import threading

import pytest
import redis as redis_lib

from devstack.redis_server import RedisServer
from edge.buffer.connection import ThreadConnections


def test_each_thread_calls_on_its_own_connection(sync_redis: redis_lib.Redis) -> None:
    connections = ThreadConnections(sync_redis)
    ids: list[int] = []

    def client_id() -> None:
        ids.extend([connections.call("CLIENT", "ID"), connections.call("CLIENT", "ID")])

    threads = [threading.Thread(target=client_id) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6
    assert len(set(ids)) == 3  # one per thread, kept between calls
    connections.close()
    assert len(sync_redis.client_list(_type="normal")) == 1  # only the fixture's own is left


def test_a_redis_restart_costs_no_call_and_scripts_are_loaded_again() -> None:
    with RedisServer() as server:
        client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)
        connections = ThreadConnections(client)
        script = client.register_script("return {KEYS[1], ARGV[1]}")
        assert connections.run_script(script, ["k"], [1]) == ["k", "1"]
        server.restart()  # closes the idle connection and empties the script cache
        assert connections.run_script(script, ["k"], [2]) == ["k", "2"]
        assert connections.call("SCRIPT", "EXISTS", script.sha) == [1]
        server.stop()
        with pytest.raises(redis_lib.ConnectionError):
            connections.call("PING")
        connections.close()
        client.close()
