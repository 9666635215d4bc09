"""The rules in force, reloaded from their file on SIGHUP or when its mtime changes.

A bad new file never replaces good rules: the old ones keep running and the reason is logged
and kept in ``last_error`` (and a metric) until a good file arrives. Rules an operator uploaded
(RulesStore, in Redis) take precedence over the file while they are there, checked on the same poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog
from redis.exceptions import RedisError

from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rules import Rules, RulesError, load_rules, parse_rules_yaml
from cloud.worker.rules_store import RULES_SOURCE, RulesStore

log = structlog.get_logger(__name__)


class RulesSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        # The first load must succeed: a worker with no valid rules refuses to start.
        self.current: Rules = load_rules(path)
        self.last_error: str | None = None
        self.reloads = 0
        self._mtime_ns = self._stat()
        # The version of the uploaded rules in force; None: the file's rules are.
        self.document_version: int | None = None

    def _stat(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def reload(self) -> bool:
        """Load the file again; True when the new rules are in force (uploaded rules outrank it)."""
        self._mtime_ns = self._stat()
        if self.document_version is not None:
            return False
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

    async def check_store(self, store: RulesStore) -> None:
        """Take uploaded rules when their version changed; back to the file once they are removed."""
        try:
            version = await store.version()
            if version is None or version == self.document_version:
                if version is None and self.document_version is not None:
                    self.document_version = None
                    log.info("rules_document_removed", back_to=str(self.path))
                    self.reload()
                return
            document = await store.read()
        except RedisError as exc:  # the rules in force keep running; the next poll tries again
            log.warning("rules_document_unreadable", error=str(exc))
            return
        if document is None:
            return
        try:
            rules = parse_rules_yaml(document.yaml, RULES_SOURCE)
        except RulesError as exc:  # the store validates before it stores; this is a hand-made key
            self.last_error = str(exc)
            log.error("rules_reload_rejected", reason=str(exc), kept=self.current.source)
            return
        self.current = rules
        self.document_version = document.version
        self.last_error = None
        self.reloads += 1
        log.info("rules_reloaded", source=RULES_SOURCE, version=document.version, by=document.by)

    async def watch(
        self, poll_interval_s: float, metrics: WorkerMetrics | None = None, store: RulesStore | None = None
    ) -> None:
        """Reload on SIGHUP, on file change and on a new upload until cancelled."""
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
                if store is not None:
                    await self.check_store(store)
                if metrics is not None:
                    metrics.rules_reload_failures.set(1 if self.last_error else 0)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGHUP)
