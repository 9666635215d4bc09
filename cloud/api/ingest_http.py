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
from cloud.ingest.service import Outcome
from giftwheel.contracts import GiftEventIn, GiftRejected, strict_json

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


def unavailable(svc: Services, exc: BacklogFull | QueueUnavailable) -> ApiProblem:
    reason, detail = queue_refusal(exc)
    retry_after = str(svc.settings.ingest.retry_after_s)
    return ApiProblem(503, reason, detail, headers={"Retry-After": retry_after})


async def post_event(request: Request) -> Response:
    started = time.perf_counter()
    svc = services(request)
    body = await authenticated_body(request, svc, svc.settings.ingest.max_body_bytes, "single")
    try:
        appended = await svc.ingest.ingest_one("single", body)
    except GiftRejected as exc:
        raise ApiProblem(422, "invalid", problems_detail(exc.problems)) from None
    except (BacklogFull, QueueUnavailable) as exc:
        raise unavailable(svc, exc) from None
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


def _item_result(index: int, outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Appended):
        status = "duplicate" if outcome.duplicate else "accepted"
        return {"index": index, "status": status, "eventId": outcome.event_id}
    assert isinstance(outcome, GiftRejected)  # a queue refusal answers the whole batch
    return {"index": index, "status": "rejected", "detail": problems_detail(outcome.problems)}


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
    ingested = await svc.ingest.ingest_items("batch", items)
    if ingested.refused is not None:
        raise unavailable(svc, ingested.refused)
    results = [_item_result(index, outcome) for index, outcome in enumerate(ingested.outcomes)]
    svc.ingest.metrics.latency["batch"].observe(time.perf_counter() - started)
    return json_response(
        200,
        {
            "accepted": ingested.accepted,
            "duplicates": ingested.duplicates,
            "rejected": ingested.rejected,
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
