"""Free TCP ports on the loopback interface for servers started by tests, benches and the demo."""

from __future__ import annotations

import socket

from devstack.waiting import wait_until


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until something accepts TCP connections on host:port, or raise TimeoutError."""
    wait_until(lambda: port_open(host, port), timeout_s, what=f"something listening on {host}:{port}")
