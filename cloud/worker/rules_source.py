"""The rules in force, reloaded from their file on SIGHUP or when its mtime changes.

A bad new file never replaces good rules: the old ones keep running and the reason is logged
and kept in ``last_error`` (and a metric) until a good file arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog

from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rules import Rules, RulesError, load_rules

log = structlog.get_logger(__name__)


class RulesSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        # The first load must succeed: a worker with no valid rules refuses to start.
        self.current: Rules = load_rules(path)
        self.last_error: str | None = None
        self.reloads = 0
        self._mtime_ns = self._stat()

    def _stat(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def reload(self) -> bool:
        """Load the file again; True when the new rules are in force."""
        self._mtime_ns = self._stat()
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.last_error = str(exc)
            log.error("rules_reload_rejected", reason=str(exc), kept=self.current.source)
            return False
        self.current = rules
        self.last_error = None
        self.reloads += 1
        log.info("rules_reloaded", source=str(self.path), rules=len(rules.spec.rules))
        return True

    def changed(self) -> bool:
        return self._stat() != self._mtime_ns

    async def watch(self, poll_interval_s: float, metrics: WorkerMetrics | None = None) -> None:
        """Reload on SIGHUP and on file change until cancelled."""
        loop = asyncio.get_running_loop()
        hup = asyncio.Event()
        # Outside the main thread there is no signal handling: the file watch alone reloads.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, hup.set)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hup.wait(), poll_interval_s)
                if hup.is_set() or self.changed():
                    hup.clear()
                    self.reload()
                if metrics is not None:
                    metrics.rules_reload_failures.set(1 if self.last_error else 0)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGHUP)
