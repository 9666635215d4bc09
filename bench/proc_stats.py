"""CPU time and resident memory of the processes a benchmark started, read while they run."""

from __future__ import annotations

import psutil

MIB = 1024 * 1024


def cpu_seconds(*pids: int | None) -> float:
    """User + system CPU seconds of the processes, all threads (a pid of None counts nothing)."""
    total = 0.0
    for pid in pids:
        if pid is not None:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def rss_mib(*pids: int | None) -> float:
    """Resident memory of the processes together, in MiB."""
    return sum(psutil.Process(pid).memory_info().rss for pid in pids if pid is not None) / MIB
