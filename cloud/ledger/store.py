"""The command ledger in Redis: which command carries each event, and where each command stands.

Every key of a ledger shard carries the hash tag of the ingest stream its events came from, so the
scripts that touch an event's assignment and its command together run in one Redis Cluster slot,
the same slot as the stream and its dedupe keys. A command's record therefore lives with its
stream; ``find`` probes the (few) streams for a commandId it has no stream for.

The invariant that makes a redelivery harmless: an event is assigned to at most one command, ever
(or to one skip decision). The assignment is written atomically with the command record, before
anything is published, and a later delivery of the event, however it is grouped, reuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts.motor import command_id_for
from giftwheel.lua import lua_source


class CommandState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    DONE = "done"
    FAILED = "failed"
    # Recorded for a held motor: not sent until a resume puts it back in the queue.
    HELD = "held"
    # Final: held work an operator dropped (cancelledBy, cancelReason), or cleared from the edge's queue.
    CANCELLED = "cancelled"


# Where a command may still be sent from, or be waiting for its edge: the outstanding states.
OUTSTANDING = (CommandState.QUEUED, CommandState.SENT, CommandState.DELIVERED)


# The edge's report that a command finished is the truth of what turned, whatever the cloud had
# decided meanwhile: given up on, held (a send before the hold got through) or cancelled.
_DONE_FROM = (*OUTSTANDING, CommandState.FAILED, CommandState.HELD, CommandState.CANCELLED)

SKIP_MARK = "skip:"
_ASSIGN = lua_source("cloud.ledger", "assign.lua")
_TRANSITION = lua_source("cloud.ledger", "transition.lua")


def _tag(stream: str) -> str:
    return f"{{{stream}}}"


def command_key(stream: str, command_id: str) -> str:
    return f"{_tag(stream)}:cmd:{command_id}"


def assign_key(stream: str, event_id: str) -> str:
    return f"{_tag(stream)}:assign:{event_id}"


def device_key(stream: str, device: str) -> str:
    return f"{_tag(stream)}:dev:{device}"


def open_key(stream: str) -> str:
    return f"{_tag(stream)}:open"


def devices_key(stream: str) -> str:
    return f"{_tag(stream)}:devices"


def held_key(stream: str, device: str) -> str:
    """The device's held commands of this shard (a set of commandIds)."""
    return f"{_tag(stream)}:held:{device}"


def held_devices_key(stream: str) -> str:
    """The devices that have held commands in this shard."""
    return f"{_tag(stream)}:held-devices"


@dataclass(frozen=True, slots=True)
class Command:
    command_id: str
    stream: str
    device: str
    rounds: int
    requested_rounds: int
    event_ids: tuple[str, ...]
    state: CommandState
    attempts: int = 0
    error: str = ""
    # State name -> epoch ms when the command entered it (queued, sent, delivered, done, failed...).
    timestamps: dict[str, int] = field(default_factory=dict)
    # Its attempts when a resume put it back in the queue: only later sends count against the limit.
    attempts_at_requeue: int = 0
    cancelled_by: str = ""
    cancel_reason: str = ""

    @property
    def attempts_since_requeue(self) -> int:
        return self.attempts - self.attempts_at_requeue

    @classmethod
    def from_hash(cls, stream: str, command_id: str, raw: dict[Any, Any]) -> Command:
        text = {as_text(k): as_text(v) for k, v in raw.items()}
        return cls(
            command_id=command_id,
            stream=stream,
            device=text["device"],
            rounds=int(text["rounds"]),
            requested_rounds=int(text["requestedRounds"]),
            event_ids=tuple(orjson.loads(text["events"])),
            state=CommandState(text["state"]),
            attempts=int(text.get("attempts", 0)),
            error=text.get("error", ""),
            timestamps={s.value: int(text[f"{s.value}At"]) for s in CommandState if f"{s.value}At" in text},
            attempts_at_requeue=int(text.get("attemptsAtRequeue", 0)),
            cancelled_by=text.get("cancelledBy", ""),
            cancel_reason=text.get("cancelReason", ""),
        )


@dataclass(frozen=True, slots=True)
class DeviceTotals:
    """Rounds per device; balance: accepted = done + held + cancelled + failed + outstanding.

    ``capped`` is apart: the rounds the gifts asked for beyond a command's cap, never accepted."""

    accepted: int = 0
    sent: int = 0
    done: int = 0
    failed: int = 0
    capped: int = 0
    held: int = 0
    cancelled: int = 0

    @property
    def outstanding(self) -> int:
        """Queued, sent or delivered: on its way or turning."""
        return self.accepted - self.done - self.failed - self.held - self.cancelled

    def __add__(self, other: DeviceTotals) -> DeviceTotals:
        return DeviceTotals(
            self.accepted + other.accepted,
            self.sent + other.sent,
            self.done + other.done,
            self.failed + other.failed,
            self.capped + other.capped,
            self.held + other.held,
            self.cancelled + other.cancelled,
        )


@dataclass(frozen=True, slots=True)
class Moved:
    """A command's state after a transition (None: no such command), and whether this call moved it:
    False when its state did not allow the move, or the answer was for a superseded send attempt."""

    state: CommandState | None
    moved: bool


@dataclass(frozen=True, slots=True)
class Assignment:
    """The commands that carry a group of events, and the events a skip decision already covers."""

    commands: list[Command]
    skipped: dict[str, str]


class Ledger:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        streams: Sequence[str],
        ttl_s: int,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        # The time every record is stamped with, and the worker's deadlines are counted on.
        self.clock = clock or SystemClock()
        self.streams = list(streams)
        self._ttl_s = ttl_s
        self._assign = redis.register_script(_ASSIGN)
        self._transition = redis.register_script(_TRANSITION)

    # -- decisions -------------------------------------------------------------------------------

    async def decisions(self, stream: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The commandId or skip mark already recorded for each of these events (absent: none yet)."""
        if not event_ids:
            return {}
        values = await self._redis.mget([assign_key(stream, e) for e in event_ids])
        return {e: as_text(v) for e, v in zip(event_ids, values, strict=True) if v is not None}

    async def skip(self, stream: str, reasons: dict[str, str]) -> None:
        """Record that these events turn nothing (rate limit, cooldown); a first decision stands."""
        if not reasons:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id, reason in reasons.items():
                pipe.set(assign_key(stream, event_id), SKIP_MARK + reason, nx=True, ex=self._ttl_s)
            await pipe.execute()

    async def assign(
        self,
        stream: str,
        device: str,
        rounds_by_event: dict[str, int],
        *,
        cap: int,
        deadline_ms: int,
        held: bool = False,
    ) -> Assignment:
        """Put these events (in order) into one new command for the device, unless they have one.

        Events that some command already carries stay with it (that command is returned as well,
        whatever its state), so a reclaimed batch grouped differently never makes a second
        command for the same event. The new command's id is derived from exactly its events.
        ``held``: the device is held, so a new command is recorded held (not open, not sent).
        """
        remaining = dict(rounds_by_event)
        existing: dict[str, str] = {}
        skipped: dict[str, str] = {}
        fetch: list[str] = []
        fresh: Command | None = None
        while remaining:
            event_ids = list(remaining)
            command_id = command_id_for(event_ids)
            requested = sum(remaining.values())
            rounds = min(requested, cap)
            keys = [
                command_key(stream, command_id),
                device_key(stream, device),
                open_key(stream),
                devices_key(stream),
                held_key(stream, device),
                held_devices_key(stream),
                *(assign_key(stream, e) for e in event_ids),
            ]
            args: list[Any] = [
                command_id,
                device,
                rounds,
                requested,
                self.clock.wall_ms(),
                self._ttl_s,
                deadline_ms,
                orjson.dumps(event_ids),
                "1" if held else "0",
            ]
            reply = [as_text(part) for part in await self._assign(keys=keys, args=args)]
            if reply[0] == "created":
                state = CommandState(reply[1])
                fresh = Command(
                    command_id, stream, device, rounds, requested, tuple(event_ids), state,
                    timestamps={state.value: int(args[4])},
                )  # fmt: skip
                break
            if reply[0] == "exists":
                fetch.append(command_id)
                break
            for index, owner in zip(reply[1::2], reply[2::2], strict=True):
                event_id = event_ids[int(index) - 1]
                del remaining[event_id]
                if owner.startswith(SKIP_MARK):
                    skipped[event_id] = owner.removeprefix(SKIP_MARK)
                else:
                    existing[event_id] = owner
        commands = await self.get_many(stream, list(dict.fromkeys([*existing.values(), *fetch])))
        found = [c for c in commands if c is not None]
        return Assignment([*found, fresh] if fresh else found, skipped)

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, stream: str, command_id: str) -> Command | None:
        return (await self.get_many(stream, [command_id]))[0]

    async def get_many(self, stream: str, command_ids: Sequence[str]) -> list[Command | None]:
        if not command_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for command_id in command_ids:
                pipe.hgetall(command_key(stream, command_id))
            raws = await pipe.execute()
        return [
            Command.from_hash(stream, cid, raw) if raw else None
            for cid, raw in zip(command_ids, raws, strict=True)
        ]

    async def find(self, command_id: str) -> Command | None:
        """A command by id alone (the feedback webhook knows no stream)."""
        return (await self.find_many([command_id])).get(command_id)

    async def find_many(self, command_ids: Sequence[str]) -> dict[str, Command]:
        """Commands by id alone, the unknown ones left out: every ledger shard probed for every id,
        in one pipelined round trip."""
        command_ids = list(dict.fromkeys(command_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for command_id in command_ids:
                for stream in self.streams:
                    pipe.hgetall(command_key(stream, command_id))
            raws = iter(await pipe.execute())
        found: dict[str, Command] = {}
        for command_id in command_ids:
            for stream in self.streams:
                raw = next(raws)
                if raw and command_id not in found:
                    found[command_id] = Command.from_hash(stream, command_id, raw)
        return found

    async def due(self, stream: str, *, at_ms: int, limit: int = 500) -> list[str]:
        """Open commands whose deadline has passed (unanswered, unconfirmed, or never published)."""
        ids = await self._redis.zrangebyscore(open_key(stream), "-inf", at_ms, start=0, num=limit)
        return [as_text(i) for i in ids]

    async def device_totals(self, device: str) -> DeviceTotals:
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.hgetall(device_key(stream, device))
            raws = await pipe.execute()
        total = DeviceTotals()
        for raw in raws:
            total = total + DeviceTotals(**{as_text(k): int(v) for k, v in raw.items()})
        return total

    async def add_devices(self, devices: Iterable[str]) -> None:
        """Make devices known before their first command: the ones the worker's rules name, so a
        motor's heartbeats are shown from the moment it is configured, not from its first gift."""
        names = sorted(devices)
        if names:
            await self._redis.sadd(devices_key(self.streams[0]), *names)

    async def knows_device(self, device: str) -> bool:
        """Whether the rules named this device or any command was ever assigned to it (one
        pipelined read of the shards)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.sismember(devices_key(stream), device)
            return any(await pipe.execute())

    async def devices(self) -> set[str]:
        names: set[str] = set()
        for stream in self.streams:
            names.update(as_text(n) for n in await self._redis.smembers(devices_key(stream)))
        return names

    # -- state changes ---------------------------------------------------------------------------

    async def _transition_many(
        self,
        stream: str,
        targets: Sequence[tuple[str, str]],
        to: CommandState,
        allowed_from: Iterable[CommandState],
        *,
        deadline_ms: int | None = None,
        error: str = "",
        attempt: bool = False,
        ack: tuple[str, Sequence[str]] | None = None,
        answering: Sequence[int] | None = None,
        fields: dict[str, str] | None = None,
    ) -> list[Moved]:
        """Move (commandId, device) pairs of one ledger shard; XACK ``ack``'s entries in the same step.

        ``answering``: per target, the send attempt an answer belongs to; a command that has been
        sent again since (or never that often) is left as it is. ``fields``: recorded on each
        command moved (who cancelled it, and why)."""
        keys = [open_key(stream), stream, held_devices_key(stream)]
        for command_id, device in targets:
            keys += [command_key(stream, command_id), device_key(stream, device), held_key(stream, device)]
        allowed = [s.value for s in allowed_from]
        group, entry_ids = ack if ack else ("", ())
        attempts = list(answering or ())
        if attempts and len(attempts) != len(targets):
            raise ValueError("answering needs one attempt per target")
        args: list[Any] = [
            to.value,
            self.clock.wall_ms(),
            "" if deadline_ms is None else deadline_ms,
            error,
            "1" if attempt else "0",
            group,
            orjson.dumps(fields).decode() if fields else "",
            len(allowed),
            *allowed,
            len(attempts),
            *attempts,
            *entry_ids,
        ]
        reply = await self._transition(keys=keys, args=args)
        return [
            Moved(CommandState(as_text(state)) if as_text(state) else None, int(moved) == 1)
            for state, moved in reply
        ]

    async def _move(
        self,
        command: Command | tuple[str, str],
        to: CommandState,
        allowed_from: Iterable[CommandState],
        *,
        deadline_ms: int | None = None,
        error: str = "",
        device: str | None = None,
        attempt: bool = False,
        answering: int | None = None,
    ) -> Moved:
        if isinstance(command, Command):
            stream, command_id, device = command.stream, command.command_id, command.device
        else:
            stream, command_id = command
            if device is None:
                found = await self.get(stream, command_id)
                if found is None:
                    return Moved(None, moved=False)
                device = found.device
        (result,) = await self._transition_many(
            stream,
            [(command_id, device)],
            to,
            allowed_from,
            deadline_ms=deadline_ms,
            error=error,
            attempt=attempt,
            answering=None if answering is None else [answering],
        )
        return result

    async def record_sent(
        self,
        stream: str,
        commands: Sequence[Command],
        *,
        deadline_ms: int,
        ack: tuple[str, Sequence[str]] | None = None,
    ) -> list[Moved]:
        """Commands published (PUBACKed, or written on a connection that died before the PUBACK:
        ThingsBoard may have them), each a counted send attempt, and, in the same atomic step, the
        stream entries (group, ids) they carry acknowledged."""
        return await self._transition_many(
            stream,
            [(c.command_id, c.device) for c in commands],
            CommandState.SENT,
            (CommandState.QUEUED, CommandState.SENT),
            deadline_ms=deadline_ms,
            attempt=True,
            ack=ack,
        )

    async def mark_sent(self, command: Command, *, deadline_ms: int) -> CommandState | None:
        """Published (see record_sent); a resend counts another attempt."""
        moved = await self._move(
            command,
            CommandState.SENT,
            (CommandState.QUEUED, CommandState.SENT),
            deadline_ms=deadline_ms,
            attempt=True,
        )
        return moved.state

    async def mark_due_again(self, command: Command, *, deadline_ms: int, asked: bool) -> bool:
        """A delivered command, still delivered, due again at ``deadline_ms``: ``asked`` after again
        (a counted attempt), or not (its device is held). False when it had moved on (done, failed,
        cancelled)."""
        moved = await self._move(
            command, CommandState.DELIVERED, (CommandState.DELIVERED,), deadline_ms=deadline_ms, attempt=asked
        )
        return moved.moved

    async def mark_delivered(
        self,
        stream: str,
        command_id: str,
        *,
        deadline_ms: int | None,
        device: str | None = None,
        answering: int | None = None,
    ) -> CommandState | None:
        """The edge accepted it (its RPC reply came back through ThingsBoard)."""
        moved = await self._move(
            (stream, command_id),
            CommandState.DELIVERED,
            (CommandState.QUEUED, CommandState.SENT),
            deadline_ms=deadline_ms,
            device=device,
            answering=answering,
        )
        return moved.state

    async def mark_delivered_many(
        self,
        stream: str,
        targets: Sequence[tuple[str, str]],
        *,
        deadline_ms: int,
        answering: Sequence[int] | None = None,
    ) -> list[Moved]:
        """Several (commandId, device) of one ledger shard accepted by the edge, in one step;
        ``answering``: the send attempt each acceptance answers (a superseded one moves nothing)."""
        return await self._transition_many(
            stream,
            targets,
            CommandState.DELIVERED,
            (CommandState.QUEUED, CommandState.SENT),
            deadline_ms=deadline_ms,
            answering=answering,
        )

    async def note_error(
        self,
        stream: str,
        command_id: str,
        error: str,
        *,
        retry_at_ms: int | None,
        device: str | None = None,
        answering: int | None = None,
    ) -> bool:
        """An error answer (TIMEOUT, NO_ACTIVE_CONNECTION...): keep it sent and due at retry_at_ms
        (None: keep its deadline). False when the answer was for a superseded send, or it is no
        longer sent: then nothing changed."""
        moved = await self._move(
            (stream, command_id),
            CommandState.SENT,
            (CommandState.SENT,),
            deadline_ms=retry_at_ms,
            error=error,
            device=device,
            answering=answering,
        )
        return moved.moved

    async def mark_done(self, command_id: str, *, stream: str | None = None) -> CommandState | None:
        """Completion feedback from the edge closes the command (also one given up on earlier)."""
        if stream is None:
            found = await self.find(command_id)
            if found is None:
                return None
            stream = found.stream
        moved = await self._move(
            (stream, command_id),
            CommandState.DONE,
            _DONE_FROM,
        )
        return moved.state

    async def close_reported(self, device: str, command_ids: Sequence[str]) -> list[Command]:
        """Commands the device reports finished (a heartbeat's recentDone) that the ledger does not
        hold as done: moved to done now, and returned. Ids of another device, or unknown, are left.

        One pipelined read across the shards; usually every id is done already and nothing moves.
        """
        if not command_ids:
            return []
        open_by_stream: dict[str, list[Command]] = {}
        for command in (await self.find_many(command_ids)).values():
            if command.device == device and command.state is not CommandState.DONE:
                open_by_stream.setdefault(command.stream, []).append(command)
        closed: list[Command] = []
        for stream, commands in open_by_stream.items():
            results = await self._transition_many(
                stream,
                [(c.command_id, c.device) for c in commands],
                CommandState.DONE,
                _DONE_FROM,
            )
            # Only what this call moved: a concurrent delivery of the same heartbeat closes none twice.
            closed += [c for c, result in zip(commands, results, strict=True) if result.moved]
        return closed

    async def mark_failed(
        self, stream: str, command_id: str, reason: str, *, answering: int | None = None
    ) -> CommandState | None:
        """Given up on (kept, visible); ``answering``: the send attempt whose answer made it final."""
        moved = await self._move(
            (stream, command_id),
            CommandState.FAILED,
            (CommandState.QUEUED, CommandState.SENT, CommandState.DELIVERED),
            error=reason,
            answering=answering,
        )
        return moved.state

    # -- holds -----------------------------------------------------------------------------------

    async def held_devices(self, stream: str) -> set[str]:
        """Devices with held commands in this shard."""
        return {as_text(d) for d in await self._redis.smembers(held_devices_key(stream))}

    async def held_count(self, device: str) -> int:
        """The device's held commands, all shards."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.scard(held_key(stream, device))
            return sum(int(n) for n in await pipe.execute())

    async def _move_held(
        self,
        device: str,
        to: CommandState,
        *,
        deadline_ms: int | None = None,
        fields: dict[str, str] | None = None,
    ) -> int:
        moved = 0
        for stream in self.streams:
            ids = [as_text(i) for i in await self._redis.smembers(held_key(stream, device))]
            if ids:
                results = await self._transition_many(
                    stream,
                    [(i, device) for i in ids],
                    to,
                    (CommandState.HELD,),
                    deadline_ms=deadline_ms,
                    fields=fields,
                )
                moved += sum(r.moved for r in results)
        return moved

    async def requeue_held(self, device: str) -> int:
        """The device's held commands back in the queue, due now (the sweep sends them, same ids)."""
        return await self._move_held(device, CommandState.QUEUED, deadline_ms=self.clock.wall_ms())

    async def cancel_held(self, device: str, *, by: str, reason: str) -> int:
        """The device's held commands cancelled (final), with who and why."""
        return await self._move_held(
            device, CommandState.CANCELLED, fields={"cancelledBy": by, "cancelReason": reason}
        )

    async def cancel_commands(self, device: str, command_ids: Sequence[str], *, by: str, reason: str) -> int:
        """Commands the device's edge cleared from its queue (its stop RPC): cancelled, with who and
        why. Ids of another device, unknown or already final are left."""
        by_stream: dict[str, list[str]] = {}
        for command in (await self.find_many(command_ids)).values():
            if command.device == device:
                by_stream.setdefault(command.stream, []).append(command.command_id)
        moved = 0
        for stream, ids in by_stream.items():
            results = await self._transition_many(
                stream,
                [(i, device) for i in ids],
                CommandState.CANCELLED,
                (*OUTSTANDING, CommandState.HELD),
                fields={"cancelledBy": by, "cancelReason": reason},
            )
            moved += sum(r.moved for r in results)
        return moved

    async def hold(self, command: Command) -> bool:
        """A queued or sent command of a held device, due again: held instead of sent (a send that
        got through is held by the edge, and deduped by its commandId after the resume)."""
        moved = await self._move(command, CommandState.HELD, (CommandState.QUEUED, CommandState.SENT))
        return moved.moved

    async def cancel_outstanding(self, device: str, *, by: str, reason: str) -> int:
        """The device's queued, sent and delivered commands cancelled, with who and why, before its
        edge's queue is cleared: a retry after a crash finds them so, whatever the edge answered.
        One the edge finished meanwhile still becomes done with its report (that is what turned)."""
        moved = 0
        for stream in self.streams:
            ids = [as_text(i) for i in await self._redis.zrange(open_key(stream), 0, -1)]
            mine = [
                c.command_id for c in await self.get_many(stream, ids) if c is not None and c.device == device
            ]
            if mine:
                results = await self._transition_many(
                    stream,
                    [(i, device) for i in mine],
                    CommandState.CANCELLED,
                    OUTSTANDING,
                    fields={"cancelledBy": by, "cancelReason": reason},
                )
                moved += sum(r.moved for r in results)
        return moved
