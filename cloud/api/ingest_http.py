"""POST /v1/events and /v1/events/batch: thin adapters over IngestService.

These are the hot path, so ``add_routes`` puts them straight on the app's router: an included
APIRouter adds a matching layer per request that measured at several percent of a single post.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloud.api.auth import AuthError
from cloud.api.body import read_capped
from cloud.api.problems import (
    ApiProblem,
    error_responses,
    json_response,
    problems_detail,
    queue_refusal,
)
from cloud.api.state import Services, services
from cloud.ingest.errors import BacklogFull, QueueUnavailable
from cloud.ingest.queue import Appended
from giftwheel.contracts import GiftEvent, GiftEventIn, GiftRejected, Problem, strict_json

_EVENT_SCHEMA = GiftEventIn.model_json_schema(by_alias=True)
_ERRORS = error_responses(
    {
        401: "not authenticated",
        413: "body or batch larger than the configured limit",
        422: "malformed JSON, wrong types, out-of-range values, unknown fields or event types",
        503: "backlog full (nothing stored) or queue unavailable (the events may have been stored): "
        "retry with the same eventId after Retry-After; one stored already is answered as a duplicate",
    }
)
_ACK_SCHEMA = {
    "type": "object",
    "properties": {"eventId": {"type": "string"}, "duplicate": {"type": "boolean"}},
    "required": ["eventId", "duplicate"],
}


async def authenticated_body(request: Request, svc: Services, limit: int, endpoint: str) -> bytes:
    """Bearer keys are checked before the body is read; signatures over the body, after."""
    headers = request.headers
    signed = svc.auth.needs_body(headers)
    try:
        if not signed:
            svc.auth.check_bearer(headers.get("authorization"))
        try:
            body = await read_capped(request, limit)
        except ApiProblem:
            svc.ingest.count_rejected(endpoint, "too_large")
            raise
        if signed:
            svc.auth.check_signature(headers, body)
    except AuthError as exc:
        svc.ingest.count_rejected(endpoint, "unauthorized")
        raise ApiProblem(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    return body


def unavailable(
    svc: Services, endpoint: str, exc: BacklogFull | QueueUnavailable, amount: int = 1
) -> ApiProblem:
    reason, detail = queue_refusal(exc)
    svc.ingest.count_rejected(endpoint, reason, amount)
    retry_after = str(svc.settings.ingest.retry_after_s)
    return ApiProblem(503, reason, detail, headers={"Retry-After": retry_after})


async def post_event(request: Request) -> Response:
    started = time.perf_counter()
    svc = services(request)
    body = await authenticated_body(request, svc, svc.settings.ingest.max_body_bytes, "single")
    try:
        event = svc.ingest.parse(body)
    except GiftRejected as exc:
        svc.ingest.count_rejected("single", "invalid")
        raise ApiProblem(422, "invalid", problems_detail(exc.problems)) from None
    try:
        appended = await svc.ingest.submit(event)
    except (BacklogFull, QueueUnavailable) as exc:
        raise unavailable(svc, "single", exc) from None
    svc.ingest.count("single", [appended])
    svc.ingest.metrics.latency["single"].observe(time.perf_counter() - started)
    if appended.duplicate:
        return Response(_ack(appended.event_id, b"true"), status_code=200, media_type="application/json")
    return Response(_ack(appended.event_id, b"false"), status_code=202, media_type="application/json")


def _ack(event_id: str, duplicate: bytes) -> bytes:
    return b'{"eventId":' + orjson.dumps(event_id) + b',"duplicate":' + duplicate + b"}"


_BATCH_SCHEMA = {
    "type": "object",
    "properties": {"events": {"type": "array", "items": _EVENT_SCHEMA}},
    "required": ["events"],
    "additionalProperties": False,
}
_BATCH_RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "integer"},
        "results": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["accepted", "duplicates", "rejected", "results"],
}


def _batch_items(body: bytes, max_events: int) -> list[Any]:
    try:
        document = strict_json.loads(body)
    except strict_json.DuplicateKeyError as exc:
        raise ApiProblem(422, "invalid", [{"field": exc.key, "reason": exc.reason}]) from None
    except ValueError as exc:
        raise ApiProblem(422, "invalid", [{"field": "", "reason": f"malformed JSON: {exc}"}]) from None
    if not isinstance(document, dict) or set(document) != {"events"}:
        raise ApiProblem(422, "invalid", [{"field": "", "reason": 'body must be {"events": [...]}'}])
    items = document["events"]
    if not isinstance(items, list):
        raise ApiProblem(422, "invalid", [{"field": "events", "reason": "must be an array"}])
    if len(items) > max_events:
        raise ApiProblem(413, "too_large", f"batch of {len(items)} events exceeds {max_events}")
    return items


def _item_result(index: int, outcome: Appended | list[Problem]) -> dict[str, Any]:
    if isinstance(outcome, Appended):
        status = "duplicate" if outcome.duplicate else "accepted"
        return {"index": index, "status": status, "eventId": outcome.event_id}
    return {"index": index, "status": "rejected", "detail": problems_detail(outcome)}


async def post_batch(request: Request) -> Response:
    started = time.perf_counter()
    svc = services(request)
    limits = svc.settings.ingest
    body = await authenticated_body(request, svc, limits.max_batch_body_bytes, "batch")
    try:
        items = _batch_items(body, limits.max_batch_events)
    except ApiProblem as exc:
        svc.ingest.count_rejected("batch", "too_large" if exc.status == 413 else "invalid")
        raise
    outcomes: list[Appended | list[Problem]] = []
    valid: list[tuple[int, GiftEvent]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, svc.ingest.parse_item(item)))
            outcomes.append([])
        except GiftRejected as exc:
            outcomes.append(exc.problems)
    rejected = len(items) - len(valid)
    if rejected:
        svc.ingest.count_rejected("batch", "invalid", rejected)
    if valid:
        try:
            appended = await svc.ingest.submit_all([event for _, event in valid])
        except (BacklogFull, QueueUnavailable) as exc:
            raise unavailable(svc, "batch", exc, len(valid)) from None
        for (index, _), result in zip(valid, appended, strict=True):
            outcomes[index] = result
        svc.ingest.count("batch", appended)
    results = [_item_result(index, outcome) for index, outcome in enumerate(outcomes)]
    duplicates = sum(1 for r in results if r["status"] == "duplicate")
    svc.ingest.metrics.latency["batch"].observe(time.perf_counter() - started)
    return json_response(
        200,
        {
            "accepted": len(valid) - duplicates,
            "duplicates": duplicates,
            "rejected": rejected,
            "results": results,
        },
    )


def add_routes(router: APIRouter) -> None:
    router.add_api_route(
        "/v1/events",
        post_event,
        methods=["POST"],
        status_code=202,
        summary="Ingest one gift event",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}}
        },
        responses={
            202: {"description": "stored", "content": {"application/json": {"schema": _ACK_SCHEMA}}},
            200: {"description": "a replay", "content": {"application/json": {"schema": _ACK_SCHEMA}}},
            **_ERRORS,
        },
    )
    router.add_api_route(
        "/v1/events/batch",
        post_batch,
        methods=["POST"],
        summary="Ingest many gift events; a bad item does not sink the others",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _BATCH_SCHEMA}}}
        },
        responses={
            200: {
                "description": "per-item results",
                "content": {"application/json": {"schema": _BATCH_RESULT_SCHEMA}},
            },
            **_ERRORS,
        },
    )
