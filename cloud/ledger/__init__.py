"""The command ledger: per command its events, device, rounds, state and timestamps; per device its rounds.

The worker writes it; the feedback webhook closes commands through ``Ledger.mark_done``.
"""

from cloud.ledger.store import (
    SKIP_MARK,
    Assignment,
    Command,
    CommandState,
    DeviceTotals,
    Ledger,
    Moved,
)

__all__ = ["SKIP_MARK", "Assignment", "Command", "CommandState", "DeviceTotals", "Ledger", "Moved"]
