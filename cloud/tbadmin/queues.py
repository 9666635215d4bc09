"""Idempotent rule-engine queues: make the queues in deploy/thingsboard/queues/ (ThingsBoard's Queue JSON)
exist with the settings we ship, as ThingsBoard's system administrator (only it may save a queue).

Each queue is read by name and written only where a field we ship differs: a missing queue is created,
a drifted one is sent back whole with its ``id`` and our fields put back, the rest of it (fields and
``additionalInfo`` keys we do not ship) left as it is. ThingsBoard cannot change a queue's name or
topic: a queue of our name on another topic keeps its topic, and the run says so.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.tbadmin.client import JsonObject, ThingsBoardAdmin
from cloud.tbadmin.provision import ArtefactError, Change

KIND = "rule-engine queue"
_IDENTITY = ("name", "topic")  # fixed once the queue exists (QueueValidator.validateUpdate)


@dataclass(frozen=True)
class QueueArtefacts:
    """deploy/thingsboard/queues: one Queue JSON per file, as the sysadmin would POST it."""

    queues: list[JsonObject]

    @classmethod
    def load(cls, directory: Path) -> QueueArtefacts:
        paths = sorted(directory.glob("*.json"))
        if not paths:
            raise ArtefactError(f"no queue files (*.json) in {directory}")
        queues = []
        for path in paths:
            try:
                queue = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ArtefactError(f"cannot read queue {path}: {exc}") from exc
            if not isinstance(queue, dict) or not all(isinstance(queue.get(k), str) for k in _IDENTITY):
                raise ArtefactError(f"{path} is not a ThingsBoard queue (a name and a topic)")
            queues.append(queue)
        names = [q["name"] for q in queues]
        if len(set(names)) != len(names):
            raise ArtefactError(f"two queue files in {directory} name the same queue: {names}")
        return cls(queues)


@dataclass
class QueuesResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _differs(current: Any, desired: Any) -> bool:
    """Whether ``current`` lacks what ``desired`` says: objects key by key (keys we do not ship are
    ThingsBoard's), anything else by value (0 and 0.0 alike: Java doubles come back as 0.0)."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return True
        return any(_differs(current.get(key), value) for key, value in desired.items())
    return bool(current != desired)


def _overlay(current: Any, desired: Any) -> Any:
    """``current`` with what ``desired`` says put back, object by object."""
    if isinstance(desired, dict) and isinstance(current, dict):
        return {**current, **{key: _overlay(current.get(key), value) for key, value in desired.items()}}
    return copy.deepcopy(desired)


def ensure_queue(admin: ThingsBoardAdmin, desired: JsonObject, out: QueuesResult) -> JsonObject:
    name = desired["name"]
    current = admin.queue(name)
    if current is None:
        saved = admin.save_queue(desired)
        out.changes.append(Change(KIND, name, "created"))
        return saved
    if current.get("topic") != desired["topic"]:
        out.warnings.append(
            f"{KIND} {name} keeps its topic {current.get('topic')!r}, not {desired['topic']!r}: "
            "ThingsBoard cannot change a queue's topic"
        )
    settings = {k: v for k, v in desired.items() if k not in _IDENTITY}
    if not _differs(current, settings):
        out.changes.append(Change(KIND, name, "unchanged"))
        return current
    saved = admin.save_queue(_overlay(current, settings))
    out.changes.append(Change(KIND, name, "updated"))
    return saved


def ensure_queues(admin: ThingsBoardAdmin, artefacts: QueueArtefacts) -> QueuesResult:
    out = QueuesResult()
    for queue in artefacts.queues:
        ensure_queue(admin, queue, out)
    return out
