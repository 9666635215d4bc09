"""A real Redis Cluster of N masters (no replicas) on free loopback ports, for tests and benches.

Each node is a ``RedisServer`` started with ``--cluster-enabled yes``; ``redis-cli --cluster create``
(Debian's redis-tools) assigns the 16384 slots. ``url`` points at the first node: a cluster client
discovers the others from there.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Self

from devstack.ports import free_port
from devstack.processes import Harness, installed
from devstack.redis_server import RedisServer, RedisServerError

# Each node also listens on its port + 10000 (the cluster bus), so its port must stay below this.
_MAX_CLIENT_PORT = 55_535
_BUS_OFFSET = 10_000


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_port() -> int:
    for _ in range(1_000):
        port = free_port()
        if port <= _MAX_CLIENT_PORT and _bindable(port + _BUS_OFFSET):
            return port
    raise RedisServerError("no free port pair (port, port + 10000) for a cluster node")


class RedisCluster(Harness):
    def __init__(self, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.nodes = [
            RedisServer(
                _cluster_port(), extra_args=("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
            )
            for _ in range(masters)
        ]
        for node in self.nodes:
            node.extra_args = (*node.extra_args, "--cluster-config-file", str(node.workdir / "nodes.conf"))

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout_s: float = 30.0) -> Self:
        cli = installed("redis-cli", RedisServerError, "redis-tools")
        for node in self.nodes:
            node.start()
        addresses = [f"{n.host}:{n.port}" for n in self.nodes]
        created = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if created.returncode != 0:
            raise RedisServerError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        self._wait_ok(cli, timeout_s)
        return self

    def _wait_ok(self, cli: str, timeout_s: float) -> None:
        """Every node must see the whole cluster as ok before clients rely on its slot map."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = [
                subprocess.run(
                    [cli, "-h", n.host, "-p", str(n.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s and f"cluster_known_nodes:{len(self.nodes)}" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RedisServerError(f"cluster not ok after {timeout_s} s: {states}")
            time.sleep(0.05)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
