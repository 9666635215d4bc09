"""Moves the telemetry outbox to ThingsBoard in order; an entry is deleted only once confirmed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from itertools import groupby
from typing import Any, Protocol

import structlog

from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox, OutboxEntry
from edge.errors import BufferUnavailable

log = structlog.get_logger(__name__)


class Publisher(Protocol):
    def is_connected(self) -> bool: ...

    def publish(self, device: str, telemetry: list[dict[str, Any]]) -> bool:
        """Send telemetry for one device; True only once ThingsBoard acknowledged it (QoS 1)."""
        ...


class TelemetryForwarder:
    def __init__(
        self,
        outbox: Outbox,
        ledger: CommandLedger,
        motors: Sequence[str],
        publisher: Publisher,
        *,
        batch: int,
        heartbeat_interval_s: float,
        poll_s: float = 0.02,
    ) -> None:
        self._outbox = outbox
        self._ledger = ledger
        self._motors = list(motors)
        self._publisher = publisher
        self._batch = batch
        self._heartbeat_interval_s = heartbeat_interval_s
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-forwarder", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        was_connected = False
        last_heartbeat = 0.0
        while not self._stop.is_set():
            try:
                connected = self._publisher.is_connected()
                # After a (re)connect ThingsBoard has no sub-device sessions: state telemetry makes each
                # motor reachable for RPCs again, and regular heartbeats keep the sessions from idling out.
                due = time.monotonic() - last_heartbeat >= self._heartbeat_interval_s
                if connected and (not was_connected or due):
                    for motor in self._motors:
                        self._ledger.report(motor)
                    last_heartbeat = time.monotonic()
                was_connected = connected
                if not connected or not self.flush_once():
                    self._stop.wait(self._poll_s)
            except BufferUnavailable as exc:
                log.warning("telemetry outbox unavailable", error=str(exc))
                self._stop.wait(1.0)

    def flush_once(self) -> bool:
        """Forward one batch; False when there was nothing to send or ThingsBoard did not confirm."""
        entries = self._outbox.read(self._batch)
        if not entries:
            return False
        for device, group in groupby(entries, key=lambda e: e.device):
            chunk: list[OutboxEntry] = list(group)
            if not self._publisher.publish(device, [e.as_telemetry() for e in chunk]):
                return False  # keep the rest, in order, for the next attempt
            self._outbox.ack(chunk)
            self.sent += len(chunk)
        return True
