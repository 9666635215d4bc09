"""The worker's readiness and liveness, the way its supervisor expects them.

systemd (``Type=notify``, ``WatchdogSec=``): READY=1 once the worker works, WATCHDOG=1 while it is
alive, STOPPING=1 when it stops (giftwheel/sdnotify.py). A container health check: a file renewed
while it is alive, whose age ``giftwheel worker alive`` checks.

Alive means the lease loop, on which the ownership of every shard hangs, went round recently. The
pings come from the same event loop, so a blocked loop or a stopped process (SIGSTOP) stops them and
the supervisor restarts the worker. Its shards go to the other workers meanwhile anyway: its leases
lapse after ``lease_ttl_ms`` and its pending entries are claimed after ``claim_idle_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from cloud.worker.settings import WorkerSettings
from giftwheel import sdnotify
from giftwheel.clock import Clock, SystemClock

log = structlog.get_logger(__name__)


class Liveness:
    def __init__(self, settings: WorkerSettings, *, clock: Clock | None = None) -> None:
        self._clock = (clock or SystemClock()).monotonic
        self._watchdog_s = sdnotify.watchdog_interval_s()
        self._file = settings.alive_file
        periods = [settings.alive_interval_s] if self._file is not None else []
        silences = [settings.alive_max_age_s / 2]
        if self._watchdog_s:
            # systemd's advice: ping at half the interval; a quarter leaves room for a late round.
            periods.append(self._watchdog_s / 4)
            silences.append(self._watchdog_s / 2)
        self._period_s = min(periods) if periods else None
        self._max_silence_s = min(silences)
        self._last_round = self._clock()

    def round_done(self) -> None:
        """The lease loop went round (whatever the outcome: Redis away is not a hang)."""
        self._last_round = self._clock()

    def ready(self, status: str) -> None:
        sdnotify.notify(f"READY=1\nSTATUS={status}")

    def stopping(self) -> None:
        sdnotify.notify("STOPPING=1")
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink(missing_ok=True)

    async def run(self) -> None:
        """Ping while alive; returns at once when no supervisor listens."""
        if self._period_s is None:
            return
        while True:
            if self._clock() - self._last_round <= self._max_silence_s:
                if self._watchdog_s:
                    sdnotify.notify("WATCHDOG=1")
                if self._file is not None:
                    try:
                        self._file.touch()
                    except OSError as exc:
                        log.warning("alive_file_not_renewed", file=str(self._file), error=str(exc))
            else:
                log.error("lease_loop_stalled", silent_s=round(self._clock() - self._last_round, 1))
            await asyncio.sleep(self._period_s)


def alive_problem(settings: WorkerSettings, *, clock: Clock | None = None) -> str | None:
    """Why the worker's alive file says it is not alive, or None (``giftwheel worker alive``)."""
    if settings.alive_file is None:
        return "GIFTWHEEL_WORKER__ALIVE_FILE is not set: the worker keeps no alive file to check"
    try:
        age_s = (clock or SystemClock()).wall_ms() / 1000 - settings.alive_file.stat().st_mtime
    except FileNotFoundError:
        return f"{settings.alive_file} does not exist: the worker has not started working yet, or stopped"
    if age_s > settings.alive_max_age_s:
        return (
            f"{settings.alive_file} was last renewed {age_s:.0f} s ago, more than alive_max_age_s "
            f"({settings.alive_max_age_s:g} s): the worker's loops stopped turning"
        )
    return None
