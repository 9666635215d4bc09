"""Coalescing: gifts for the same device in one batch become one command (summed rounds, all ids).

Devices keep the order in which their first gift appears in the batch, so a batch's commands go
out in stream order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cloud.worker.rules import Route
from giftwheel.contracts import GiftEvent


@dataclass(slots=True)
class DeviceGroup:
    device: str
    # eventId -> rounds, in stream order (a repeated eventId counts once).
    rounds_by_event: dict[str, int] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return sum(self.rounds_by_event.values())


def coalesce(routed: Iterable[tuple[GiftEvent, Route]]) -> list[DeviceGroup]:
    groups: dict[str, DeviceGroup] = {}
    for event, route in routed:
        group = groups.get(route.device)
        if group is None:
            group = groups[route.device] = DeviceGroup(route.device)
        group.rounds_by_event.setdefault(event.event_id, route.rounds)
    return list(groups.values())
