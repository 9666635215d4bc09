"""Every local Redis key the edge uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "giftwheel:edge"

    def commands(self, motor: str) -> str:
        """Stream of accepted, unfinished commands for one motor, oldest first."""
        return f"{self.prefix}:motor:{motor}:commands"

    def motor(self, motor: str) -> str:
        """Hash of counters and progress: rc, cd, q, state, ts, cur, done, pd (pulses), started, pts;
        hold (why it is held, until resumed)."""
        return f"{self.prefix}:motor:{motor}"

    def seen(self, motor: str, command_id: str) -> str:
        """Dedupe marker for a commandId, written in the same script that queues the command ('1'),
        then holding its outcome, its TTL kept: the done entry (the script that finishes it) or
        'cleared' (a stop). A re-ask reads it (recall.lua)."""
        return f"{self.prefix}:motor:{motor}:seen:{command_id}"

    def recent_done(self, motor: str) -> str:
        """The motor's last finished commandIds, newest first, capped; every heartbeat repeats them."""
        return f"{self.prefix}:motor:{motor}:recent-done"

    @property
    def outbox(self) -> str:
        """Stream of telemetry not yet confirmed by ThingsBoard, in the order it happened."""
        return f"{self.prefix}:outbox"
