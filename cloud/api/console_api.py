"""/v1/console/*: the control room's JSON API, used by the /console page and by ``giftwheel ctl``.

Operators log in with their own credentials (ConsoleSettings.operators, hashed), never the ingest
API keys. A session lives in Redis and its id in an HttpOnly, SameSite=Strict cookie (Secure over
https). Every state-changing request must come from our own origin (Origin, else Referer, when the
client sends one: browsers do) and carry the session's CSRF token in X-CSRF-Token. Every action,
refused ones included, is written to the audit stream.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import orjson
import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cloud.api.problems import ApiProblem, error_responses, json_response, problems_detail, queue_refusal
from cloud.api.settings import ApiSettings
from cloud.api.state import services
from cloud.console.audit import AuditEntry, AuditLog
from cloud.console.login_limit import LoginLimit
from cloud.console.passwords import dummy_hash, verify_password
from cloud.console.sessions import Session, Sessions
from cloud.control.client import ControlClient, ControlNotConfirmed
from cloud.control.status import FleetStatus, FleetStatusReader
from cloud.ingest.errors import BacklogFull, QueueUnavailable
from cloud.ingest.queue import GiftQueue
from cloud.worker.dlq import DeadLetters
from cloud.worker.rules import RulesError
from cloud.worker.rules_store import RulesStore
from giftwheel.clock import Clock
from giftwheel.contracts import GiftRejected
from giftwheel.contracts.control import ControlAction, ControlRequest, Reason, Target, new_request_id

log = structlog.get_logger(__name__)
_M = TypeVar("_M", bound=BaseModel)

COOKIE = "giftwheel_console"
CSRF_HEADER = "x-csrf-token"
# The platform of a test gift: ledger, overlay and every log can tell it from a viewer's.
TEST_PLATFORM = "test"
ENDPOINT = "console"
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Console:
    settings: ApiSettings
    sessions: Sessions
    audit: AuditLog
    logins: LoginLimit
    status: FleetStatusReader
    control: ControlClient
    dlq: DeadLetters
    rules: RulesStore


def build_console(
    settings: ApiSettings, redis: Redis | RedisCluster, queue: GiftQueue, clock: Clock
) -> Console:
    console = settings.console
    return Console(
        settings=settings,
        sessions=Sessions(redis, console.session_ttl_s),
        audit=AuditLog(redis, console.audit_max_entries),
        logins=LoginLimit(redis, failures_max=console.login_failures_max, window_s=console.login_window_s),
        status=FleetStatusReader(redis, streams=queue.streams, settings=console.status, clock=clock),
        control=ControlClient(redis),
        dlq=DeadLetters(redis),
        rules=RulesStore(redis),
    )


def _console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class LoginBody(_Body):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class ControlBody(_Body):
    action: ControlAction
    device: Target
    reason: Reason = ""


class TestGiftBody(_Body):
    gift_name: str = Field(default="Test gift", min_length=1, max_length=64)
    diamond: int = Field(default=1, ge=1)
    quantity: int = Field(default=1, ge=1)


StreamId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")]


class ReplayBody(_Body):
    ids: list[StreamId] = Field(default=[], max_length=10_000)
    all: bool = False


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def _parse(request: Request, model: type[_M]) -> _M:
    """The JSON body as ``model``, or 422 naming each field and what is wrong with it."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        # The bodies are flat: the field is the first part of the path (a union such as the device,
        # a name or "*", adds its branches after it, and says the same once per branch).
        detail = []
        for error in exc.errors(include_url=False):
            item = {"field": str(error["loc"][0]) if error["loc"] else "body", "reason": error["msg"]}
            if item not in detail:
                detail.append(item)
        raise ApiProblem(422, "invalid_request", detail) from None


async def _audit(
    console: Console, request: Request, who: str, action: str, result: str, **detail: Any
) -> None:
    entry = AuditEntry(
        at_ms=services(request).clock.wall_ms(),
        who=who,
        action=action,
        result=result,
        client=_client(request),
        detail=detail,
    )
    try:
        await console.audit.write(entry)
    except RedisError as exc:  # the action's own answer says what happened; the log keeps the entry
        log.error("audit_write_failed", error=str(exc), **entry.model_dump())


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def _cross_site(request: Request) -> str | None:
    """Why the request is not from our own page, or None. A client that sends neither Origin nor
    Referer is not a browser (ctl, curl): no other site can make it send our cookie."""
    origin = request.headers.get("origin")
    if origin is not None:
        return None if origin == _own_origin(request) else f"Origin {origin!r} is not this site"
    referer = request.headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        if f"{parts.scheme}://{parts.netloc}" != _own_origin(request):
            return "Referer is not this site"
    return None


async def operator(request: Request) -> Session:
    """The logged-in operator's session; for a state-changing request also the origin and CSRF checks."""
    console = _console(request)
    session_id = request.cookies.get(COOKIE)
    try:
        session = await console.sessions.find(session_id)
    except RedisError as exc:
        raise ApiProblem(503, "unavailable", f"session store unreachable: {type(exc).__name__}") from None
    if session is None:
        raise ApiProblem(401, "unauthorized", "not logged in, or the session expired: log in again")
    if request.method in _STATE_CHANGING:
        if (why := _cross_site(request)) is not None:
            await _audit(
                console, request, session.operator, f"refused {request.url.path}", "refused", why=why
            )
            raise ApiProblem(403, "cross_site", why)
        if not session.csrf_matches(request.headers.get(CSRF_HEADER)):
            why = f"missing or wrong {CSRF_HEADER} header"
            await _audit(
                console, request, session.operator, f"refused {request.url.path}", "refused", why=why
            )
            raise ApiProblem(403, "csrf", why)
    return session


OperatorDep = Annotated[Session, Depends(operator)]
router = APIRouter(prefix="/v1/console", tags=["console"])


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """A schema with its local $refs replaced by their definitions: this document's are not at #/$defs."""
    if isinstance(node, dict):
        if (ref := node.get("$ref", "")).startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, schema.get("$defs", {}))}},
        }
    }


# Every console route: not logged in (or expired), cross-site or no CSRF token, the session store away.
_REFUSALS = {
    401: "not logged in, or the session expired",
    403: "cross-site, or without the session's X-CSRF-Token",
    422: "a bad body or parameter: each field and why",
    503: "Redis unreachable",
}


def _set_cookie(request: Request, response: Response, session_id: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.post(
    "/login",
    summary="Log an operator in: a session cookie and its CSRF token",
    openapi_extra=_body(LoginBody),
    responses=error_responses(
        {401: "wrong user or password", 403: "cross-site", 422: "bad body", 429: "too many failed logins"}
    ),
)
async def login(request: Request) -> Response:
    console = _console(request)
    client = _client(request)
    if (why := _cross_site(request)) is not None:
        await _audit(console, request, "", "login", "refused", why=why)
        raise ApiProblem(403, "cross_site", why)
    body = await _parse(request, LoginBody)
    if (wait_s := await console.logins.blocked_for_s(client)) > 0:
        await _audit(console, request, body.user, "login", "refused", why="too many failed logins")
        raise ApiProblem(
            429,
            "too_many_logins",
            f"too many failed logins; try again in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )
    stored = console.settings.console.operators.get(body.user)
    # An unknown name costs the same hash as a known one: the timing tells no names apart.
    matched = verify_password(body.password, stored.get_secret_value() if stored else dummy_hash())
    if stored is None or not matched:
        await console.logins.failed(client)
        await _audit(console, request, body.user, "login", "failed", why="wrong user or password")
        raise ApiProblem(401, "unauthorized", "wrong user or password")
    session_id, session = await console.sessions.open(body.user, services(request).clock.wall_ms())
    await _audit(console, request, body.user, "login", "ok")
    response = json_response(
        200, {"operator": body.user, "csrf": session.csrf, "expiresInS": console.sessions.ttl_s}
    )
    _set_cookie(request, response, session_id, console.sessions.ttl_s)
    return response


@router.post("/logout", status_code=204, summary="End the session", responses=error_responses(_REFUSALS))
async def logout(request: Request, session: OperatorDep) -> Response:
    console = _console(request)
    await console.sessions.close(request.cookies.get(COOKIE, ""))
    await _audit(console, request, session.operator, "logout", "ok")
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/session", summary="Who is logged in, and the CSRF token", responses=error_responses(_REFUSALS))
async def who_am_i(session: OperatorDep) -> Response:
    """The page learns its CSRF token here after a reload (the cookie is HttpOnly)."""
    return json_response(200, {"operator": session.operator, "csrf": session.csrf})


@router.get(
    "/status",
    summary="The fleet: each motor's state, hold, work and ledger totals; ingest rate, backlog, lag, DLQ",
    responses={200: {"model": FleetStatus, "description": "the fleet now"}, **error_responses(_REFUSALS)},
)
async def status(request: Request, _: OperatorDep) -> Response:
    try:
        fleet = await _console(request).status.read()
    except RedisError as exc:
        raise ApiProblem(503, "unavailable", f"redis unreachable: {type(exc).__name__}") from None
    return json_response(200, fleet.model_dump(by_alias=True, mode="json"))


@router.post(
    "/control",
    summary="Stop, hold, resume or cancel a motor or all ('*'); its outcome",
    openapi_extra=_body(ControlBody),
    responses={
        202: {"description": "not confirmed in time: queued, carried out later"},
        **error_responses({**_REFUSALS, 409: "refused (cancel of a motor not held)"}),
    },
)
async def control(request: Request, session: OperatorDep) -> Response:
    console = _console(request)
    body = await _parse(request, ControlBody)
    control_request = ControlRequest(
        request_id=new_request_id(),
        action=body.action,
        device=body.device,
        by=session.operator,
        reason=body.reason,
        at_ms=services(request).clock.wall_ms(),
    )
    what = {"device": body.device, "reason": body.reason, "requestId": control_request.request_id}
    try:
        outcome = await console.control.submit(control_request, console.settings.control_confirm_timeout_s)
    except ControlNotConfirmed as exc:
        await _audit(console, request, session.operator, f"control.{body.action}", "unconfirmed", **what)
        return json_response(
            202, {"error": "not_confirmed", "detail": str(exc), "requestId": control_request.request_id}
        )
    outcome_json = outcome.model_dump(by_alias=True, mode="json")
    if outcome.refused is not None:
        await _audit(
            console,
            request,
            session.operator,
            f"control.{body.action}",
            "refused",
            why=outcome.refused,
            **what,
        )
        return json_response(409, {"error": "refused", "detail": outcome.refused, "outcome": outcome_json})
    result = "ok" if outcome.ok else "partial"
    motors = {m.device: m.detail or ("ok" if m.ok else "failed") for m in outcome.motors}
    await _audit(console, request, session.operator, f"control.{body.action}", result, motors=motors, **what)
    return json_response(200, outcome_json)


@router.post(
    "/test-gift",
    status_code=202,
    summary="A gift marked as a test, through the real pipeline",
    openapi_extra=_body(TestGiftBody),
    responses=error_responses(_REFUSALS),
)
async def test_gift(request: Request, session: OperatorDep) -> Response:
    """A gift through the real pipeline (ingest, queue, worker, edge), marked as a test: platform
    'test' and an eventId starting 'test:', which the ledger keeps and the overlay shows."""
    console = _console(request)
    svc = services(request)
    body = await _parse(request, TestGiftBody)
    event = {
        "eventId": f"{TEST_PLATFORM}:{secrets.token_hex(12)}",
        "event": "gift",
        "platform": TEST_PLATFORM,
        "userId": f"console:{session.operator}",
        "userName": f"TEST ({session.operator})",
        "giftName": body.gift_name,
        "diamond": body.diamond,
        "quantity": body.quantity,
        "timestamp": svc.clock.wall_ms(),
    }
    try:
        appended = await svc.ingest.ingest_one(ENDPOINT, orjson.dumps(event))
    except GiftRejected as exc:
        await _audit(console, request, session.operator, "test-gift", "refused", why=str(exc))
        raise ApiProblem(422, "invalid_gift", problems_detail(exc.problems)) from None
    except (BacklogFull, QueueUnavailable) as exc:
        reason, detail = queue_refusal(exc)
        await _audit(console, request, session.operator, "test-gift", "failed", why=reason)
        raise ApiProblem(503, reason, detail) from None
    await _audit(
        console,
        request,
        session.operator,
        "test-gift",
        "ok",
        eventId=appended.event_id,
        giftName=body.gift_name,
        diamond=body.diamond,
        quantity=body.quantity,
    )
    return json_response(202, {"eventId": appended.event_id, "entryId": appended.entry_id})


@router.get("/dlq", summary="The dead letters, oldest first", responses=error_responses(_REFUSALS))
async def dlq_list(
    request: Request,
    _: OperatorDep,
    after: Annotated[str, Query(pattern=r"^(-|[0-9]{1,20}-[0-9]{1,20})$")] = "-",
    count: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    console = _console(request)
    limit = min(count or console.settings.console.list_max, console.settings.console.list_max)
    letters = await console.dlq.read(count=limit, after=after)
    return json_response(
        200,
        {
            "size": await console.dlq.size(),
            "letters": [
                {
                    "id": letter.dlq_id,
                    "stream": letter.stream,
                    "entryId": letter.entry_id,
                    "reason": letter.reason,
                    "deliveries": letter.deliveries,
                    "event": letter.event,
                    "deadAtMs": letter.dead_at_ms,
                }
                for letter in letters
            ],
        },
    )


@router.post(
    "/dlq/replay",
    summary="Put dead letters back on their streams",
    openapi_extra=_body(ReplayBody),
    responses=error_responses(_REFUSALS),
)
async def dlq_replay(request: Request, session: OperatorDep) -> Response:
    """Replay the named dead letters (or all, up to list_max a call) onto their streams."""
    console = _console(request)
    body = await _parse(request, ReplayBody)
    if body.all == bool(body.ids):
        raise ApiProblem(422, "invalid_request", "name dead-letter ids, or send all: true (not both)")
    ids = body.ids
    if body.all:
        ids = [letter.dlq_id for letter in await console.dlq.read(count=console.settings.console.list_max)]
    replayed = await console.dlq.replay(ids)
    done = [{"id": dlq_id, "newEntryId": new_id} for dlq_id, new_id in replayed]
    missing = sorted(set(ids) - {dlq_id for dlq_id, _ in replayed})
    await _audit(console, request, session.operator, "dlq.replay", "ok", replayed=len(done), missing=missing)
    return json_response(200, {"replayed": done, "missing": missing})


@router.get("/rules", summary="The uploaded rules in force, if any", responses=error_responses(_REFUSALS))
async def rules_show(request: Request, _: OperatorDep) -> Response:
    document = await _console(request).rules.read()
    if document is None:
        return json_response(200, {"source": "file", "yaml": None})
    return json_response(
        200,
        {
            "source": "upload",
            "yaml": document.yaml,
            "by": document.by,
            "atMs": document.at_ms,
            "version": document.version,
        },
    )


@router.put(
    "/rules",
    summary="Upload rules YAML: validated, then taken up by every worker",
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/yaml": {"schema": {"type": "string"}}}}
    },
    responses=error_responses({**_REFUSALS, 413: "larger than rules_max_bytes"}),
)
async def rules_upload(request: Request, session: OperatorDep) -> Response:
    """New rules as YAML (the body, any text type): validated, stored, taken up by every worker on its
    next rules poll. Invalid rules are refused with the reason and the rules in force stay."""
    console = _console(request)
    limit = console.settings.console.rules_max_bytes
    raw = await request.body()
    if len(raw) > limit:
        raise ApiProblem(413, "too_large", f"rules larger than {limit} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ApiProblem(422, "invalid_rules", "rules must be UTF-8 text") from None
    try:
        rules, version = await console.rules.upload(text, session.operator, services(request).clock.wall_ms())
    except RulesError as exc:
        await _audit(console, request, session.operator, "rules.upload", "refused", why=str(exc))
        raise ApiProblem(422, "invalid_rules", str(exc)) from None
    await _audit(
        console, request, session.operator, "rules.upload", "ok", version=version, rules=len(rules.spec.rules)
    )
    return json_response(
        200, {"version": version, "rules": len(rules.spec.rules), "devices": sorted(rules.devices())}
    )


@router.get("/audit", summary="The newest audit entries, newest first", responses=error_responses(_REFUSALS))
async def audit_list(
    request: Request, _: OperatorDep, count: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    console = _console(request)
    limit = min(count or console.settings.console.list_max, console.settings.console.list_max)
    entries = await console.audit.newest(limit)
    return json_response(200, {"entries": [e.model_dump(by_alias=True) for e in entries]})
