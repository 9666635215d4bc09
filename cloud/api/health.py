"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.api.auth import secret_matches
from cloud.api.problems import ApiProblem, error_responses, json_response
from cloud.api.state import services

router = APIRouter()


_STATUS = {"application/json": {"schema": {"type": "object"}}}


@router.get("/healthz", summary="The process is up", responses={200: {"content": _STATUS}})
async def healthz() -> Response:
    return json_response(200, {"status": "ok"})


@router.get(
    "/readyz",
    summary="Redis is reachable: ingest can store events",
    responses={200: {"content": _STATUS}, 503: {"description": "not ready", "content": _STATUS}},
)
async def readyz(request: Request) -> Response:
    svc = services(request)
    if await svc.ingest.queue.ping():
        return json_response(200, {"status": "ready", "backlog": svc.ingest.backlog})
    headers = {"Retry-After": str(svc.settings.ingest.retry_after_s)}
    return json_response(503, {"status": "unavailable", "detail": "redis unreachable"}, headers)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (Authorization: Bearer <metrics.token>)",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
        **error_responses({401: "missing or wrong metrics token", 403: "no metrics token configured"}),
    },
)
async def metrics(request: Request) -> Response:
    svc = services(request)
    token = svc.settings.metrics.token
    if token is None:
        if svc.settings.mode != "development":
            raise ApiProblem(
                403, "forbidden", "no GIFTWHEEL_METRICS__TOKEN configured: metrics are not served"
            )
    else:
        scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not secret_matches(presented.strip(), token):
            raise ApiProblem(401, "unauthorized", "send Authorization: Bearer <metrics token>")
    registry = svc.ingest.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
