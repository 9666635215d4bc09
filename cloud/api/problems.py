"""One error shape for every refusal: {"error": code, "detail": ...}, with the right status."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from cloud.ingest.errors import BacklogFull, QueueMisconfigured, QueueUnavailable
from giftwheel.contracts import Problem

# Redis did not answer in time: a write it received may still have been done, so nothing may be
# promised either way; and its error names its host and port, which are nobody's business outside.
QUEUE_UNAVAILABLE = (
    "the queue did not answer in time: the events may have been stored; retry with the same "
    "eventId (or the same body) after Retry-After: one stored already comes back as a duplicate"
)


def queue_refusal(exc: BacklogFull | QueueUnavailable) -> tuple[str, str]:
    """The reason and the detail a sender is told when the queue took none of its events."""
    if isinstance(exc, BacklogFull | QueueMisconfigured):
        return exc.reason, str(exc)  # refused before any write: nothing may have been stored
    return exc.reason, QUEUE_UNAVAILABLE


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: Any,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {}},
    "required": ["error", "detail"],
}


def error_responses(why: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for refusals, all in the one error shape."""
    return {
        status: {"description": reason, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status, reason in why.items()
    }


def problems_detail(problems: list[Problem]) -> list[dict[str, str]]:
    return [{"field": p.field, "reason": p.reason} for p in problems]


def json_response(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


async def handle_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return json_response(exc.status, {"error": exc.error, "detail": exc.detail}, exc.headers)
