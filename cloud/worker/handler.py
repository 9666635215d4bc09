"""The gift handler: a batch of stream entries in, commands recorded and sent, entries to ack out.

parse -> limits (skips recorded) -> rules -> coalesce per device -> ledger assignment (reusing any
command an event already belongs to; recorded held for a held device) -> publish -> ack. An entry
that is not a GiftEvent is dead on arrival (it can never succeed): it goes to the dead-letter stream
with the parser's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import ValidationError

from cloud.control.holds import Holds
from cloud.ledger import Command, Ledger
from cloud.worker.coalesce import coalesce
from cloud.worker.commands import CommandSender
from cloud.worker.consumer import Entry, Outcome
from cloud.worker.limits import Limits
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rules import Rules
from giftwheel.contracts import EVENT_FIELD, GiftEvent


class GiftHandler:
    def __init__(
        self,
        ledger: Ledger,
        rules: Callable[[], Rules],
        limits: Limits,
        sender: CommandSender,
        metrics: WorkerMetrics,
        holds: Holds,
        *,
        attempt_lifetime_s: float,
    ) -> None:
        self._ledger = ledger
        self._rules = rules
        self._limits = limits
        self._sender = sender
        self._metrics = metrics
        self._holds = holds
        # A new command's deadline, as if sent now: ThingsBoard may have it from the publish on.
        self._deadline_ms = int(attempt_lifetime_s * 1000)

    async def __call__(self, stream: str, entries: list[Entry]) -> Outcome:
        outcome = Outcome()
        parsed: list[str] = []
        events: list[GiftEvent] = []
        for entry in entries:
            try:
                events.append(GiftEvent.model_validate_json(entry.fields.get(EVENT_FIELD, "")))
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                outcome.dead.append((entry.entry_id, f"not a GiftEvent: {reasons}"[:500]))
                continue
            parsed.append(entry.entry_id)
        self._metrics.events_invalid.inc(len(outcome.dead))

        if self._limits.enabled:
            decided = await self._ledger.decisions(stream, [e.event_id for e in events])
            skipped = await self._limits.check([e for e in events if e.event_id not in decided])
            await self._ledger.skip(stream, skipped)
            events = [e for e in events if e.event_id not in skipped]
            self._metrics.events_skipped.inc(len(skipped))

        rules = self._rules()
        groups = coalesce((event, rules.route(event)) for event in events)
        deadline = self._ledger.clock.wall_ms() + self._deadline_ms
        # A hold lifted after this read leaves a command held with no hold: the sweep requeues it.
        held = await self._holds.read() if groups else None
        assignments = await asyncio.gather(
            *(
                self._ledger.assign(
                    stream,
                    g.device,
                    g.rounds_by_event,
                    cap=rules.command_cap(g.device),
                    deadline_ms=deadline,
                    held=held is not None and held.covers(g.device),
                )
                for g in groups
            )
        )
        commands: dict[str, Command] = {}
        for assignment in assignments:
            self._metrics.events_skipped.inc(len(assignment.skipped))
            for command in assignment.commands:
                commands.setdefault(command.command_id, command)
        # The entries are acked in the same atomic step that records the commands as sent.
        await self._sender.send(stream, list(commands.values()), ack_ids=parsed)
        outcome.acked = parsed
        self._metrics.events_commanded.inc(len(events))
        return outcome
