"""Sends ledger commands through the dispatcher and follows each on ThingsBoard's RPC timeline.

A send is a counted attempt, and the command ``sent``, once ThingsBoard may have it: PUBACKed, or
written on a connection that died before its PUBACK. Its deadline is when no server-side RPC of it
can still be pending (``RpcTimeline.attempt_lifetime_s``). Only the answer to the command's latest
attempt moves it earlier (an answer to a superseded attempt changes nothing), as ``Answer`` says:
the edge accepted it (``delivered``); an answer that ended the server-side RPC (TIMEOUT,
NO_ACTIVE_CONNECTION, an error from the edge) makes it due after ``retry_pause_s``; the
transport's own timeout leaves the deadline (the RPC may still be pending); the request itself
coming back (no such device in ThingsBoard) marks it ``failed`` at once. ``sweep`` sends again,
with the same commandId, every open command of a shard whose deadline passed, and marks it
``failed`` (kept, visible, counted) once ``command_max_attempts`` sends went unanswered. So at
most one RPC per command is pending in ThingsBoard.

A delivered command is due ``command_done_check_s`` after its delivery, then each time as long again
as it has waited so far, until its done arrives: it is asked after again (a re-ask,
RotateParams.reask: same commandId, a counted attempt, still ``delivered``). Its edge queues nothing
and answers where it stands (RotateReply.outcome); a finished command's done telemetry goes into the
edge's outbox again and closes it on the normal path, so a done report ThingsBoard gave up on is
repaired however many commands finished meanwhile. ``command_done_timeout_s`` after its delivery it
is ``failed``, as before. A re-ask does not wait for an earlier one's RPC to expire (a Pi offline
leaves it pending up to ``attempt_lifetime_s``): one never turns anything, and its answer is matched
to its attempt like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from enum import Enum
from typing import Any

import structlog
from pydantic import ValidationError

from cloud.control.holds import HeldMotors, Holds
from cloud.ledger import Command, CommandState, Ledger
from cloud.worker.consumer import Retryable
from cloud.worker.dispatcher import (
    Dispatcher,
    DispatchUnavailable,
    DispatchUncertain,
    Sent,
    is_own_request,
)
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rpc_timeline import TRANSPORT_TIMEOUT_REPLY
from cloud.worker.settings import WorkerSettings
from giftwheel.contracts import WORKER_GROUP
from giftwheel.contracts.motor import CommandOutcome, RotateReply, RpcError

log = structlog.get_logger(__name__)

_NEVER_MS = 10 * 365 * 86_400_000


class Answer(Enum):
    """What ThingsBoard's answer to one send means for its command."""

    ACCEPTED = "the edge accepted it: delivered"
    UNKNOWN_DEVICE = "the request itself came back: ThingsBoard has no such device, final"
    RPC_ENDED = (
        "the server-side RPC is over (TIMEOUT, NO_ACTIVE_CONNECTION, the edge's error): send again soon"
    )
    RPC_MAY_BE_PENDING = (
        "the transport stopped waiting, the chain may not have: wait for the attempt's expiry"
    )


def _problem_in(reply: dict[str, Any]) -> str | None:
    """None for the edge's RotateReply; otherwise what is wrong with the answer."""
    if "error" in reply:
        return str(reply.get("error"))[:200]
    try:
        RotateReply.model_validate(reply)
    except ValidationError as exc:
        return f"unexpected reply: {exc.errors(include_url=False)[0]['msg']}"
    return None


# What an edge answered to a re-ask, beyond CommandOutcome's (giftwheel_worker_reask_answers_total).
REASK_UNKNOWN = "unknown"  # no record of the command on the edge: its buffer lost it
REASK_ERROR = "error"  # no answer from the edge (TIMEOUT, UNAVAILABLE, an older edge's BAD_PARAMS...)


def reask_outcome(reply: dict[str, Any]) -> str:
    """The outcome an answer to a re-ask reports: a CommandOutcome's value, REASK_UNKNOWN or REASK_ERROR."""
    if reply.get("error") == RpcError.UNKNOWN_COMMAND.value:
        return REASK_UNKNOWN
    try:
        outcome = RotateReply.model_validate(reply).outcome
    except ValidationError:
        return REASK_ERROR
    return REASK_ERROR if outcome is None else outcome.value


def classify(sent: Sent, reply: dict[str, Any]) -> tuple[Answer, str]:
    """The answer's meaning, and the problem it reports ("" for an acceptance)."""
    if is_own_request(sent, reply):
        reason = (
            f"unknown device: ThingsBoard has no device named {sent.device!r} "
            "(the rule chain answered with the request itself)"
        )
        return Answer.UNKNOWN_DEVICE, reason
    if reply == TRANSPORT_TIMEOUT_REPLY:
        return Answer.RPC_MAY_BE_PENDING, "timeout (CLIENT_SIDE_RPC_TIMEOUT)"
    problem = _problem_in(reply)
    return (Answer.ACCEPTED, "") if problem is None else (Answer.RPC_ENDED, problem)


class CommandSender:
    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        holds: Holds,
    ) -> None:
        self._ledger = ledger
        self._holds = holds
        self._dispatcher = dispatcher
        self._settings = settings
        self._metrics = metrics
        self._reply_tasks: set[asyncio.Task[None]] = set()
        # Held from a send's publish until its attempt is recorded: every answer waits for that
        # record, so it is checked against the attempt it answers, never lands before it (or is lost).
        self._recording: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._delivered: list[Sent] = []
        self._flusher: asyncio.Task[None] | None = None

    def _attempt_deadline(self) -> int:
        """When no server-side RPC of a send made now can still be pending."""
        return self._ledger.clock.wall_ms() + int(self._settings.rpc.attempt_lifetime_s * 1000)

    async def send(self, stream: str, commands: Sequence[Command], *, ack_ids: Sequence[str] = ()) -> None:
        """Publish the queued ones (in order, pipelined on one connection), then, in one atomic
        ledger step, mark them sent and XACK ``ack_ids`` (the entries the commands carry).

        Raises Retryable when ThingsBoard is away; whatever ThingsBoard may have by then is marked
        sent, and nothing is acked.
        """
        async with self._recording[stream]:
            await self._send(stream, commands, ack_ids)

    async def _send(self, stream: str, commands: Sequence[Command], ack_ids: Sequence[str]) -> None:
        queued = [c for c in commands if c.state is CommandState.QUEUED]
        results: list[BaseException | None] = []
        if queued:
            results = await asyncio.gather(
                *(
                    self._dispatcher.send(c.stream, c.command_id, c.device, c.rounds, attempt=c.attempts + 1)
                    for c in queued
                ),
                return_exceptions=True,
            )
        sent = [
            c for c, r in zip(queued, results, strict=True) if r is None or isinstance(r, DispatchUncertain)
        ]
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, DispatchUncertain)]
        ack = None if errors or not ack_ids else (WORKER_GROUP, ack_ids)
        if sent or ack:
            await self._ledger.record_sent(stream, sent, deadline_ms=self._attempt_deadline(), ack=ack)
        self._metrics.commands.inc(len(sent))
        if errors:
            if all(isinstance(e, DispatchUnavailable) for e in errors):
                raise Retryable(str(errors[0]))
            raise errors[0]

    def on_reply(self, sent: Sent, reply: dict[str, Any]) -> None:
        """ThingsBoard's answer to one send; what it does to the command is ``Answer``'s."""
        answer, problem = classify(sent, reply)
        if sent.reask and answer is not Answer.UNKNOWN_DEVICE:
            self._on_reask_answer(sent, reply, problem)
            return
        if answer is Answer.ACCEPTED:
            self._metrics.replies_accepted.inc()
            self._delivered.append(sent)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._record_delivered())
            return
        malformed = answer is Answer.RPC_ENDED and "error" not in reply
        (self._metrics.replies_malformed if malformed else self._metrics.replies_error).inc()
        if answer is Answer.UNKNOWN_DEVICE:
            self._track(self._fail_answered(sent, problem))
            return
        log.warning(
            "command_error_reply",
            command_id=sent.command_id,
            device=sent.device,
            attempt=sent.attempt,
            error=problem,
            rpc_may_be_pending=answer is Answer.RPC_MAY_BE_PENDING,
        )
        retry_at = (
            None
            if answer is Answer.RPC_MAY_BE_PENDING
            else self._ledger.clock.wall_ms() + self._retry_pause_ms
        )
        self._track(self._record_problem(sent, problem, retry_at))

    def _on_reask_answer(self, sent: Sent, reply: dict[str, Any], problem: str) -> None:
        """A delivered command stays delivered and due at its next check whatever the answer,
        but for a final one: cleared by a stop (cancelled), or unknown to its edge (failed)."""
        outcome = reask_outcome(reply)
        self._metrics.reask_answers.labels(outcome).inc()
        # A done sent again means its first report was lost upstream: worth a warning.
        (log.warning if outcome == CommandOutcome.DONE.value else log.info)(
            "reask_answered",
            command_id=sent.command_id,
            device=sent.device,
            attempt=sent.attempt,
            outcome=outcome,
            error=problem if outcome == REASK_ERROR else "",
        )
        if outcome == CommandOutcome.CLEARED.value:
            self._track(self._cancel_cleared(sent))
        elif outcome == REASK_UNKNOWN:
            reason = f"its edge has no record of it (its buffer lost it): {problem}"
            self._track(self._fail_answered(sent, reason))

    async def _cancel_cleared(self, sent: Sent) -> None:
        try:
            async with self._recording[sent.stream]:
                await self._ledger.cancel_commands(
                    sent.device, [sent.command_id], by="edge", reason="cleared from the queue by a stop"
                )
        except Exception:  # a lost update only delays: the next re-ask finds it cleared again
            log.exception("reply_not_recorded", command_id=sent.command_id)

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._reply_tasks.add(task)
        task.add_done_callback(self._reply_tasks.discard)

    @property
    def _retry_pause_ms(self) -> int:
        return int(self._settings.rpc.retry_pause_s * 1000)

    def _ignored(self, sent: Sent) -> None:
        self._metrics.replies_ignored.inc()
        log.info("answer_ignored", command_id=sent.command_id, attempt=sent.attempt)

    async def _record_delivered(self) -> None:
        # Answers that arrive while one write is under way go together in the next: one script
        # call per ledger shard instead of one per answer.
        while self._delivered:
            batch, self._delivered = self._delivered, []
            by_stream: dict[str, list[Sent]] = defaultdict(list)
            for sent in batch:
                by_stream[sent.stream].append(sent)
            now = self._ledger.clock.wall_ms()
            deadline = self._next_done_check(delivered_at_ms=now, now_ms=now)
            for stream, answered in by_stream.items():
                try:
                    async with self._recording[stream]:
                        results = await self._ledger.mark_delivered_many(
                            stream,
                            [(s.command_id, s.device) for s in answered],
                            deadline_ms=deadline,
                            answering=[s.attempt for s in answered],
                        )
                except Exception:  # a lost update only delays: the command's deadline brings it back
                    log.exception("replies_not_recorded", stream=stream, commands=len(answered))
                    continue
                for sent, result in zip(answered, results, strict=True):
                    if not result.moved:
                        self._ignored(sent)

    def _next_done_check(self, *, delivered_at_ms: int, now_ms: int) -> int:
        """When a delivered command is next due: its next re-ask, or its final give-up if sooner.
        The first re-ask is ``command_done_check_s`` after its delivery, each next one as long after
        as the command has waited so far (60, 120, 240 s...): the lost done of a command that
        turned at once is found a check after its delivery, a later one's within as long as it had
        waited, and a long backlog of commands still queued behind one motor costs a few re-asks
        each until it turns (six in the hour to ``command_done_timeout_s``), not one every check."""
        check_ms = int(self._settings.command_done_check_s * 1000)
        wait_ms = max(check_ms, now_ms - delivered_at_ms) if check_ms else _NEVER_MS
        return min(self._given_up_at(delivered_at_ms), now_ms + wait_ms)

    def _given_up_at(self, delivered_at_ms: int) -> int:
        """When a delivered command whose done never came is failed (``command_done_timeout_s``)."""
        timeout_ms = int(self._settings.command_done_timeout_s * 1000)
        return delivered_at_ms + (timeout_ms or _NEVER_MS)

    async def _record_problem(self, sent: Sent, problem: str, retry_at_ms: int | None) -> None:
        try:
            async with self._recording[sent.stream]:
                moved = await self._ledger.note_error(
                    sent.stream,
                    sent.command_id,
                    problem,
                    device=sent.device,
                    retry_at_ms=retry_at_ms,
                    answering=sent.attempt,
                )
        except Exception:  # a lost update only delays: the command's deadline brings it back
            log.exception("reply_not_recorded", command_id=sent.command_id)
            return
        if not moved:
            self._ignored(sent)

    async def _fail_answered(self, sent: Sent, reason: str) -> None:
        """An answer that makes its command final at once (unless it answers a superseded send)."""
        async with self._recording[sent.stream]:
            try:
                state = await self._ledger.mark_failed(
                    sent.stream, sent.command_id, reason, answering=sent.attempt
                )
            except Exception:  # a lost update only delays: the deadline sends again, its answer fails it
                log.exception("reply_not_recorded", command_id=sent.command_id)
                return
        if state is CommandState.FAILED:
            self._failed(sent.command_id, sent.device, reason)
        else:
            self._ignored(sent)

    async def sweep(self, stream: str) -> int:
        """Resend, hold or fail this shard's overdue commands, after requeueing the held commands of
        devices no longer held; returns how many were handled."""
        held = await self._holds.read()
        await self._requeue_released(stream, held)
        due = await self._ledger.due(stream, at_ms=self._ledger.clock.wall_ms())
        if not due:
            return 0
        handled = 0
        for command_id in due:
            # Under the lock and read afresh: an answer recorded meanwhile may have moved it.
            async with self._recording[stream]:
                command = await self._ledger.get(stream, command_id)
                if command is None:
                    continue
                try:
                    handled += await self._handle_due(command, held)
                except DispatchUnavailable:
                    break  # ThingsBoard is away: the rest wait for the next sweep
        return handled

    async def _requeue_released(self, stream: str, held: HeldMotors) -> None:
        """Held commands of a device that is not held (created held just as a resume lifted its
        hold, or left by a resume that stopped half-way) go back in the queue, due now."""
        for device in await self._ledger.held_devices(stream):
            if not held.covers(device):
                moved = await self._ledger.requeue_held(device)
                log.info("held_commands_requeued", device=device, commands=moved)

    async def _handle_due(self, command: Command, held: HeldMotors) -> bool:
        """Fail, hold or send again one command whose deadline passed; False if it had moved on.
        Raises DispatchUnavailable when it could not be sent."""
        if command.state not in (CommandState.QUEUED, CommandState.SENT, CommandState.DELIVERED):
            return False
        if command.state is not CommandState.DELIVERED and held.covers(command.device):
            # Its device was held since: keep it for the resume (a send that got through is held by
            # the edge, which dedupes the resend by its commandId).
            return await self._ledger.hold(command)
        if command.state is CommandState.DELIVERED:
            return await self._reask_or_fail(command, held)
        if command.attempts_since_requeue >= self._settings.command_max_attempts:
            last = f": {command.error}" if command.error else ""
            reason = f"unanswered after {command.attempts} sends{last}"
            await self._fail(command.stream, command.command_id, command.device, reason)
            return True
        attempt = await self._send_next_attempt(command)
        await self._ledger.mark_sent(command, deadline_ms=self._attempt_deadline())
        self._metrics.retries.inc()
        log.info("command_resent", command_id=command.command_id, attempt=attempt)
        return True

    async def _reask_or_fail(self, command: Command, held: HeldMotors) -> bool:
        """A delivered command with no done yet: failed once ``command_done_timeout_s`` has passed
        since its delivery, else asked after again (the edge queues nothing: a command still queued
        or turning is just asked again at its next check), unless its device is held: its queue
        waits for the resume, so every command there would answer pending. Raises
        DispatchUnavailable as a send."""
        now = self._ledger.clock.wall_ms()
        delivered_at = command.timestamps.get(CommandState.DELIVERED.value, now)
        if now >= self._given_up_at(delivered_at):
            reason = f"no completion feedback within {self._settings.command_done_timeout_s} s"
            await self._fail(command.stream, command.command_id, command.device, reason)
            return True
        deadline = self._next_done_check(delivered_at_ms=delivered_at, now_ms=now)
        if held.covers(command.device):
            return await self._ledger.mark_due_again(command, deadline_ms=deadline, asked=False)
        attempt = await self._send_next_attempt(command, reask=True)
        await self._ledger.mark_due_again(command, deadline_ms=deadline, asked=True)
        self._metrics.reasks.inc()
        log.info(
            "command_reasked",
            command_id=command.command_id,
            device=command.device,
            attempt=attempt,
            delivered_s_ago=round((now - delivered_at) / 1000, 1),
        )
        return True

    async def _send_next_attempt(self, command: Command, *, reask: bool = False) -> int:
        """Sends the command's next attempt and returns its number. Raises DispatchUnavailable when
        nothing was written."""
        attempt = command.attempts + 1
        with contextlib.suppress(DispatchUncertain):  # ThingsBoard may have it: an attempt all the same
            await self._dispatcher.send(
                command.stream,
                command.command_id,
                command.device,
                command.rounds,
                attempt=attempt,
                reask=reask,
            )
        return attempt

    async def _fail(self, stream: str, command_id: str, device: str, reason: str) -> None:
        await self._ledger.mark_failed(stream, command_id, reason)
        self._failed(command_id, device, reason)

    def _failed(self, command_id: str, device: str, reason: str) -> None:
        self._metrics.failed.inc()
        log.error("command_failed", command_id=command_id, device=device, reason=reason)

    async def drain(self) -> None:
        """Wait until every answer received so far is in the ledger."""
        while self._reply_tasks or (self._flusher is not None and not self._flusher.done()):
            pending = [*self._reply_tasks, *([self._flusher] if self._flusher else [])]
            await asyncio.gather(*pending, return_exceptions=True)
