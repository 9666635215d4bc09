"""Sends ledger commands through the dispatcher and follows them until answered, retried or failed.

A command is marked ``sent`` only after the broker's PUBACK; ThingsBoard's answer marks it
``delivered`` (the edge accepted it) or reschedules it; an answer that can never change (no such
device in ThingsBoard) marks it ``failed`` at once. ``sweep`` resends, with the same commandId,
every open command of a shard whose deadline passed, and marks it ``failed`` (kept, visible,
counted) once ``command_max_attempts`` sends went unanswered.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog
from pydantic import ValidationError

from cloud.ledger import Command, CommandState, Ledger, now_ms
from cloud.worker.consumer import Retryable
from cloud.worker.dispatcher import Dispatcher, DispatchUnavailable, Sent, is_own_request
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.settings import WorkerSettings
from giftwheel.contracts import WORKER_GROUP
from giftwheel.contracts.motor import RotateReply

log = structlog.get_logger(__name__)

# After an error answer (TIMEOUT, NO_ACTIVE_CONNECTION...) the next send waits this long.
_RETRY_AFTER_ERROR_MS = 1_000
_NEVER_MS = 10 * 365 * 86_400_000


def _problem_in(reply: dict[str, Any]) -> str | None:
    """None for the edge's RotateReply; otherwise what is wrong with the answer."""
    if "error" in reply:
        return str(reply.get("error"))[:200]
    try:
        RotateReply.model_validate(reply)
    except ValidationError as exc:
        return f"unexpected reply: {exc.errors(include_url=False)[0]['msg']}"
    return None


class CommandSender:
    def __init__(
        self, ledger: Ledger, dispatcher: Dispatcher, settings: WorkerSettings, metrics: WorkerMetrics
    ) -> None:
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._settings = settings
        self._metrics = metrics
        self._reply_tasks: set[asyncio.Task[None]] = set()
        # Held from a batch's first publish until its sent record is written: an answer that fails
        # a command waits for that record, so the failure never lands before it (or gets lost).
        self._recording: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._delivered: list[Sent] = []
        self._flusher: asyncio.Task[None] | None = None

    def _reply_deadline(self) -> int:
        return now_ms() + int(self._settings.rpc_reply_timeout_s * 1000)

    async def send(self, stream: str, commands: Sequence[Command], *, ack_ids: Sequence[str] = ()) -> None:
        """Publish the queued ones (in order, pipelined on one connection), then, in one atomic
        ledger step, mark them sent and XACK ``ack_ids`` (the entries the commands carry).

        Raises Retryable when ThingsBoard is away; whatever was PUBACKed by then is marked sent,
        and nothing is acked.
        """
        async with self._recording[stream]:
            await self._send(stream, commands, ack_ids)

    async def _send(self, stream: str, commands: Sequence[Command], ack_ids: Sequence[str]) -> None:
        queued = [c for c in commands if c.state is CommandState.QUEUED]
        results: list[BaseException | None] = []
        if queued:
            results = await asyncio.gather(
                *(self._dispatcher.send(c.stream, c.command_id, c.device, c.rounds) for c in queued),
                return_exceptions=True,
            )
        sent = [c for c, r in zip(queued, results, strict=True) if r is None]
        errors = [r for r in results if isinstance(r, BaseException)]
        ack = None if errors or not ack_ids else (WORKER_GROUP, ack_ids)
        if sent or ack:
            await self._ledger.record_sent(stream, sent, deadline_ms=self._reply_deadline(), ack=ack)
        self._metrics.commands.inc(len(sent))
        if errors:
            if all(isinstance(e, DispatchUnavailable) for e in errors):
                raise Retryable(str(errors[0]))
            raise errors[0]

    def on_reply(self, sent: Sent, reply: dict[str, Any]) -> None:
        """ThingsBoard's answer to a send: the edge's RotateReply, an error to retry after, or the
        request itself (no such device: resending cannot help, so the command fails at once)."""
        if is_own_request(sent, reply):
            self._metrics.replies_error.inc()
            self._track(self._fail_unknown_device(sent))
            return
        problem = _problem_in(reply)
        if problem is None:
            self._metrics.replies_accepted.inc()
            self._delivered.append(sent)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._record_delivered())
            return
        (self._metrics.replies_error if "error" in reply else self._metrics.replies_malformed).inc()
        log.warning("command_error_reply", command_id=sent.command_id, device=sent.device, error=problem)
        self._track(self._record_problem(sent, problem))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._reply_tasks.add(task)
        task.add_done_callback(self._reply_tasks.discard)

    async def _record_delivered(self) -> None:
        # Answers that arrive while one write is under way go together in the next: one script
        # call per ledger shard instead of one per answer.
        done_timeout_ms = int(self._settings.command_done_timeout_s * 1000)
        while self._delivered:
            batch, self._delivered = self._delivered, []
            by_stream: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for sent in batch:
                by_stream[sent.stream].append((sent.command_id, sent.device))
            deadline = now_ms() + (done_timeout_ms or _NEVER_MS)
            for stream, targets in by_stream.items():
                try:
                    await self._ledger.mark_delivered_many(stream, targets, deadline_ms=deadline)
                except Exception:  # a lost update only delays: the command's deadline brings it back
                    log.exception("replies_not_recorded", stream=stream, commands=len(targets))

    async def _record_problem(self, sent: Sent, problem: str) -> None:
        try:
            await self._ledger.note_error(
                sent.stream,
                sent.command_id,
                problem,
                device=sent.device,
                retry_at_ms=now_ms() + _RETRY_AFTER_ERROR_MS,
            )
        except Exception:  # a lost update only delays: the command's deadline brings it back
            log.exception("reply_not_recorded", command_id=sent.command_id)

    async def _fail_unknown_device(self, sent: Sent) -> None:
        reason = (
            f"unknown device: ThingsBoard has no device named {sent.device!r} "
            "(the rule chain answered with the request itself)"
        )
        async with self._recording[sent.stream]:
            try:
                await self._fail(sent.stream, sent.command_id, sent.device, reason)
            except Exception:  # a lost update only delays: the deadline resends, the next answer fails it
                log.exception("reply_not_recorded", command_id=sent.command_id)

    async def sweep(self, stream: str) -> int:
        """Resend or fail this shard's overdue commands; returns how many were handled."""
        due = await self._ledger.due(stream, at_ms=now_ms())
        if not due:
            return 0
        handled = 0
        for command in await self._ledger.get_many(stream, due):
            if command is None:
                continue
            if command.state is CommandState.DELIVERED:
                reason = f"no completion feedback within {self._settings.command_done_timeout_s} s"
                await self._fail(command.stream, command.command_id, command.device, reason)
            elif command.attempts >= self._settings.command_max_attempts:
                last = f": {command.error}" if command.error else ""
                reason = f"unanswered after {command.attempts} sends{last}"
                await self._fail(command.stream, command.command_id, command.device, reason)
            else:
                try:
                    await self._dispatcher.send(
                        command.stream, command.command_id, command.device, command.rounds
                    )
                except DispatchUnavailable:
                    return handled
                await self._ledger.mark_sent(command, deadline_ms=self._reply_deadline())
                self._metrics.retries.inc()
                log.info("command_resent", command_id=command.command_id, attempt=command.attempts + 1)
            handled += 1
        return handled

    async def _fail(self, stream: str, command_id: str, device: str, reason: str) -> None:
        await self._ledger.mark_failed(stream, command_id, reason)
        self._metrics.failed.inc()
        log.error("command_failed", command_id=command_id, device=device, reason=reason)

    async def drain(self) -> None:
        """Wait until every answer received so far is in the ledger."""
        while self._reply_tasks or (self._flusher is not None and not self._flusher.done()):
            pending = [*self._reply_tasks, *([self._flusher] if self._flusher else [])]
            await asyncio.gather(*pending, return_exceptions=True)
