"""Moves the telemetry outbox to ThingsBoard in order; an entry is deleted only once confirmed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from enum import Enum
from typing import Any, Protocol

import structlog

from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox, OutboxEntry
from edge.errors import BufferUnavailable

log = structlog.get_logger(__name__)


class Publisher(Protocol):
    def is_connected(self) -> bool: ...

    def publish(self, telemetry: dict[str, list[dict[str, Any]]]) -> set[str]:
        """Send each device's telemetry, in its order (QoS 1); returns the devices whose telemetry
        ThingsBoard acknowledged."""
        ...


class Flush(Enum):
    SENT = "sent"  # a full batch went out, confirmed: more may wait
    DRAINED = "drained"  # all that was there went out, confirmed
    EMPTY = "empty"
    UNCONFIRMED = "unconfirmed"  # ThingsBoard did not confirm: the entries stay, in order


class TelemetryForwarder:
    """Forwards when the ledger has written (the outbox's notice), not by asking Redis in a loop:
    an idle daemon reads nothing. ``poll_s`` is how often it looks at the connection (a reconnect
    re-announces the motors) and retries a batch ThingsBoard did not confirm.

    After a batch went out the next one waits ``gather_s``, so while commands keep coming their
    queued, started and done entries share one message per device, one acknowledgement, one outbox
    read and one delete, instead of each entry paying for all of them; the first entry after a quiet
    spell goes at once."""

    def __init__(
        self,
        outbox: Outbox,
        ledger: CommandLedger,
        motors: Sequence[str],
        publisher: Publisher,
        *,
        batch: int,
        heartbeat_interval_s: float,
        gather_s: float = 0.0,
        poll_s: float = 0.1,
    ) -> None:
        self._outbox = outbox
        self._ledger = ledger
        self._motors = list(motors)
        self._publisher = publisher
        self._batch = batch
        self._heartbeat_interval_s = heartbeat_interval_s
        self._gather_s = gather_s
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telemetry-forwarder", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._outbox.notify()  # ends a wait for the outbox at once
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        was_connected = False
        last_heartbeat = 0.0
        unsent = True  # what an earlier run, or the time offline, left in the outbox
        while not self._stop.is_set():
            try:
                connected = self._publisher.is_connected()
                # After a (re)connect ThingsBoard has no sub-device sessions: state telemetry makes each
                # motor reachable for RPCs again, and regular heartbeats keep the sessions from idling out.
                now = time.monotonic()
                if connected and (not was_connected or now - last_heartbeat >= self._heartbeat_interval_s):
                    for motor in self._motors:
                        self._ledger.report(motor)
                    last_heartbeat = now = time.monotonic()
                was_connected = connected
                if not connected:
                    self._stop.wait(self._poll_s)
                    continue
                if unsent or self._outbox.wait_written(0):
                    result = self.flush_once()
                    unsent = result in (Flush.SENT, Flush.UNCONFIRMED)
                    if result is Flush.DRAINED:
                        self._stop.wait(self._gather_s)
                    if result is not Flush.UNCONFIRMED:
                        continue
                    self._stop.wait(self._poll_s)
                    continue
                heartbeat_in_s = last_heartbeat + self._heartbeat_interval_s - now
                unsent = self._outbox.wait_written(max(0.0, min(self._poll_s, heartbeat_in_s)))
            except BufferUnavailable as exc:
                log.warning("telemetry outbox unavailable", error=str(exc))
                unsent = True
                self._stop.wait(1.0)

    def flush_once(self) -> Flush:
        """Forward one batch of the outbox, oldest first: one message per device, all sent before any
        acknowledgement is awaited. Each device's entries stay in order; a device whose message was
        not acknowledged keeps all of its entries for the next attempt, the others' are deleted."""
        entries = self._outbox.read(self._batch)
        if not entries:
            return Flush.EMPTY
        by_device: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_device.setdefault(entry.device, []).append(entry)
        confirmed = self._publisher.publish(
            {device: [e.as_telemetry() for e in chunk] for device, chunk in by_device.items()}
        )
        done = [e for device in confirmed for e in by_device.get(device, [])]
        self._outbox.ack(done)
        self.sent += len(done)
        if len(done) < len(entries):
            return Flush.UNCONFIRMED
        return Flush.SENT if len(entries) == self._batch else Flush.DRAINED
