"""A motor's progress written to the ledger on its own thread, every fraction of a round.

The step loop only hands over the newest pulse count and goes on, so a slow write (an SD card's
fsync, a Redis restart) delays a checkpoint, not a pulse, until the motor nears the unwritten bound.
A kill -9 repeats what turned since the last written checkpoint: one checkpoint interval, plus what
turns while one write is in flight, and never more than the bound.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.buffer.ledger import CommandLedger, retry_until_available

# A kill -9 repeats at most this fraction of a round (plus one write in flight); each motor writes
# rate / (fraction x pulses per round) times a second while it turns.
DEFAULT_CHECKPOINT_FRACTION = 0.05
# A motor comes to rest within this of its last written checkpoint (the buffer is down or stalled,
# or the writer lags) and waits: a crash repeats at most this much.
DEFAULT_MAX_UNWRITTEN_ROUNDS = 1.0


@dataclass(frozen=True)
class CheckpointPolicy:
    fraction_of_round: float = DEFAULT_CHECKPOINT_FRACTION
    max_unwritten_rounds: float = DEFAULT_MAX_UNWRITTEN_ROUNDS

    def every_pulses(self, pulses_per_round: int) -> int:
        return max(1, round(pulses_per_round * self.fraction_of_round))

    def max_unwritten_pulses(self, pulses_per_round: int) -> int:
        every = self.every_pulses(pulses_per_round)
        return max(2 * every, round(pulses_per_round * self.max_unwritten_rounds))


class Checkpointer:
    """One writer thread per motor; ``post`` replaces the pending checkpoint (only the newest counts)."""

    def __init__(self, motor: str, ledger: CommandLedger, pulses_per_round: int) -> None:
        self._motor = motor
        self._ledger = ledger
        self._pulses_per_round = pulses_per_round
        self._cond = threading.Condition()
        self._pending: tuple[str, int] | None = None
        self._writing = False
        self._written: tuple[str, int] = ("", 0)
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"checkpoint-{motor}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def begin(self, command_id: str, pulses: int) -> None:
        """A command starts (or resumes) with ``pulses`` already written."""
        with self._cond:
            self._written = (command_id, pulses)

    def post(self, command_id: str, pulses: int) -> None:
        with self._cond:
            self._raise_if_failed()
            self._pending = (command_id, pulses)
            self._cond.notify_all()

    def written(self, command_id: str) -> int:
        """Pulses of ``command_id`` known to be in the ledger."""
        with self._cond:
            self._raise_if_failed()
            cid, pulses = self._written
            return pulses if cid == command_id else 0

    def flush(self, tick: Callable[[], None], should_stop: Callable[[], bool], poll_s: float = 0.2) -> bool:
        """Wait until every posted checkpoint is written (True) or ``should_stop`` (False)."""
        with self._cond:
            while self._pending is not None or self._writing:
                self._raise_if_failed()
                if should_stop():
                    return False
                tick()
                self._cond.wait(poll_s)
            self._raise_if_failed()
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"checkpoint writer of {self._motor} failed") from self._error

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._closed:
                        self._cond.wait()
                    if self._pending is None:
                        return
                    command_id, pulses = self._pending
                    self._pending = None
                    self._writing = True
                retry_until_available(
                    functools.partial(
                        self._ledger.progress, self._motor, command_id, pulses, self._pulses_per_round
                    ),
                    should_stop=lambda: self._closed,
                )
                with self._cond:
                    self._writing = False
                    if self._written[0] == command_id and pulses > self._written[1]:
                        self._written = (command_id, pulses)
                    self._cond.notify_all()
        except BaseException as exc:
            # A script error is a bug, not an outage: the motor thread re-raises it as a fault.
            with self._cond:
                self._error = exc
                self._writing = False
                self._cond.notify_all()
