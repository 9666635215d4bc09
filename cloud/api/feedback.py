"""POST /v1/feedback/thingsboard: motor telemetry from the rule chain's REST API call node.

The chain posts the telemetry message's data (the motor's keys) as the body, the device name and
telemetry ts from its metadata as headers, and the shared secret in X-Giftwheel-Secret.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from redis.exceptions import RedisError

from cloud.api.auth import secret_matches
from cloud.api.body import read_capped
from cloud.api.header_ints import unsigned
from cloud.api.problems import ApiProblem, error_responses, json_response
from cloud.api.settings import ApiSettings
from cloud.api.state import services
from cloud.feedback.service import FeedbackRefused
from cloud.feedback.telemetry import MotorTelemetry
from giftwheel.contracts import strict_json

log = structlog.get_logger(__name__)
router = APIRouter()

SECRET_HEADER = "x-giftwheel-secret"  # noqa: S105 (a header name)
DEVICE_HEADER = "x-device-name"
TS_HEADER = "x-telemetry-ts"
# Unix milliseconds have 13 digits until the year 2286.
_MAX_TS_DIGITS = 16

_ERRORS = error_responses(
    {
        401: "missing or wrong shared secret",
        413: "body larger than the configured limit",
        422: "malformed JSON, not an object, no motor telemetry key, bad values or device name, a "
        "device no command was sent to, or a done for a command the ledger did not issue to it",
        503: "Redis unavailable: the call may be partly recorded; the chain may retry it (recording "
        "is idempotent)",
    }
)


def _check_secret(settings: ApiSettings, presented: str | None, request: Request) -> None:
    configured = settings.feedback.secret
    if configured is None and settings.mode == "development":
        return
    reason = None
    if configured is None:
        reason = "no feedback secret configured on this server"
    elif presented is None:
        reason = f"missing {SECRET_HEADER} header"
    elif not secret_matches(presented, configured):
        reason = "wrong shared secret"
    if reason is not None:
        client = request.client.host if request.client else None
        log.warning("feedback refused", reason=reason, client=client)
        raise ApiProblem(401, "unauthorized", reason)


def _invalid(field: str, reason: str) -> ApiProblem:
    return ApiProblem(422, "invalid", [{"field": field, "reason": reason}])


def _telemetry(body: bytes) -> MotorTelemetry:
    try:
        document = strict_json.loads(body)
    except strict_json.DuplicateKeyError as exc:
        raise _invalid(exc.key, exc.reason) from None
    except ValueError as exc:
        raise _invalid("", f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("", "body must be a JSON object of telemetry keys")
    try:
        return MotorTelemetry.model_validate(document)
    except ValidationError as exc:
        detail = [
            {"field": ".".join(str(p) for p in error["loc"]), "reason": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiProblem(422, "invalid", detail) from None


def _ts_ms(header: str | None, now_ms: int) -> int:
    if header is None or header == "":
        return now_ms
    if (ts_ms := unsigned(header, _MAX_TS_DIGITS)) is None:
        raise _invalid(TS_HEADER, "must be Unix milliseconds")
    return ts_ms


@router.post(
    "/v1/feedback/thingsboard",
    summary="Motor telemetry from ThingsBoard's rule chain: updates the ledger, informs viewers",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MotorTelemetry.model_json_schema(by_alias=True)}},
        }
    },
    responses={200: {"description": "recorded"}, **_ERRORS},
)
async def thingsboard_feedback(request: Request) -> Response:
    svc = services(request)
    settings = svc.settings
    _check_secret(settings, request.headers.get(SECRET_HEADER), request)
    body = await read_capped(request, settings.feedback.max_body_bytes)
    device = request.headers.get(DEVICE_HEADER, "")
    if not svc.realtime.hub.is_device_name(device):
        raise _invalid(DEVICE_HEADER, "must name the motor device (1-64 letters, digits, '_', '.', '-')")
    now_ms = svc.clock.wall_ms()
    ts_ms = _ts_ms(request.headers.get(TS_HEADER), now_ms)
    telemetry = _telemetry(body)
    max_ahead_ms = int(settings.feedback.max_ts_ahead_s * 1000)
    try:
        applied = await svc.feedback.apply(device, telemetry, ts_ms, now_ms=now_ms, max_ahead_ms=max_ahead_ms)
    except (RedisError, OSError):
        retry_after = str(settings.ingest.retry_after_s)
        # Redis's error names its host and port: not for the caller.
        detail = "Redis did not answer: the call may be partly recorded; retry it"
        raise ApiProblem(503, "unavailable", detail, headers={"Retry-After": retry_after}) from None
    except FeedbackRefused as exc:
        raise _invalid(exc.field, exc.detail) from None
    return json_response(200, {"device": device, "published": applied.event, "ledger": applied.ledger_state})
