"""The FastAPI application factory: settings in, app out; clients built in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.types import Receive, Scope, Send

from cloud.agreement import Agreed, Agreement
from cloud.api import console as console_page
from cloud.api import console_api, feedback, health, ingest_http, ingest_ws, overlay, realtime_ws
from cloud.api.auth import Authenticator
from cloud.api.console_api import build_console
from cloud.api.guarded_http import GUARD_STATE_KEY, EdgeGuard, fit_open_files
from cloud.api.problems import ApiProblem, handle_problem
from cloud.api.settings import ApiSettings
from cloud.api.state import Services, services
from cloud.client_errors import ClientErrors
from cloud.feedback.metrics import FeedbackMetrics
from cloud.feedback.service import FeedbackService
from cloud.ingest.errors import QueueUnavailable
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.queue import GiftQueue
from cloud.ingest.service import IngestService
from cloud.ledger.store import Ledger
from cloud.realtime.metrics import RealtimeMetrics
from cloud.realtime.service import SOCKETIO_PATH, Realtime
from cloud.redis_client import connect, connect_pipelined
from giftwheel import __version__
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts import event_streams

log = structlog.get_logger(__name__)


async def _close_within(timeout_s: float, *closing: Callable[[], Awaitable[None]]) -> None:
    """Close in order, but never let a stuck close keep a stopping process alive."""
    try:
        async with asyncio.timeout(timeout_s):
            for close in closing:
                await close()
    except TimeoutError:
        log.warning("shutdown did not finish in time; exiting anyway", timeout_s=timeout_s)


class OpenDoorError(RuntimeError):
    """Ingest would accept events from anyone outside development mode."""


async def _client_left(request: Request, exc: Exception) -> Response:
    """The client went away mid-body (or its body timed out): a client's doing, not a server error."""
    request.app.state.client_errors.note("client_disconnect", "client left before its body was read")
    return Response(status_code=400)  # nobody reads it; uvicorn drops it for a gone client


async def _socketio(scope: Scope, receive: Receive, send: Send) -> None:
    """The Socket.IO server as a route of the app; the server itself is built in the lifespan."""
    await services(HTTPConnection(scope)).realtime.asgi(scope, receive, send)


def create_app(settings: ApiSettings, *, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()

    if (problem := settings.ingest_auth_problem()) is not None:
        raise OpenDoorError(problem)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, EdgeGuard]]:
        redis = connect(settings)
        pipelined = connect_pipelined(settings)
        queue = GiftQueue(
            redis,
            shards=settings.ingest.stream_shards,
            dedupe_ttl_s=settings.ingest.dedupe_ttl_s,
            pipelined=pipelined,
            agreement=Agreement(redis, Agreed(settings.ingest.stream_shards), role="api"),
        )
        try:
            await queue.agree()  # SettingsDisagree: this API must not start
        except QueueUnavailable as exc:
            log.warning(
                "agreed settings unchecked: redis unavailable; checked before any write", error=str(exc)
            )
        if settings.metrics.token is None and settings.mode != "development":
            # Said once at the start, not first noticed as a scraper's 403 when an alert is missing.
            log.warning("no GIFTWHEEL_METRICS__TOKEN: GET /metrics answers 403 to every scraper")
        registry = CollectorRegistry()
        client_errors = ClientErrors(registry, per_minute=settings.http.client_error_logs_per_min)
        realtime = Realtime(settings, redis, client_errors)
        RealtimeMetrics(realtime, registry)
        ledger = Ledger(
            redis, streams=event_streams(settings.ingest.stream_shards), ttl_s=settings.worker.ledger_ttl_s
        )
        feedback_service = FeedbackService(ledger, realtime.motors)
        FeedbackMetrics(feedback_service, registry)
        if (feedback_problem := settings.feedback_auth_problem()) is not None:
            log.warning("feedback webhook closed", problem=feedback_problem)
        ingest = IngestService(
            settings,
            queue,
            IngestMetrics(registry),
            clock=clock,
            on_accepted=realtime.announcer.announce,
        )
        auth = Authenticator(
            settings.api_keys,
            settings.webhook_secrets,
            signature_window_s=settings.ingest.signature_window_s,
            clock=clock,
        )
        app.state.services = Services(
            settings=settings,
            auth=auth,
            ingest=ingest,
            realtime=realtime,
            feedback=feedback_service,
            clock=clock,
        )
        app.state.client_errors = client_errors
        app.state.console = build_console(settings, redis, queue, clock)
        max_connections = fit_open_files(settings.http, settings.redis.max_connections * 2)
        guard = EdgeGuard(settings.http, client_errors, max_connections)
        await ingest.start()
        realtime.start()
        try:
            # uvicorn hands this state to every connection: GuardedHttpToolsProtocol reads its limits.
            yield {GUARD_STATE_KEY: guard}
        finally:
            closing = [ingest.stop, realtime.stop, redis.aclose]
            if pipelined is not None:
                closing.append(pipelined.aclose)
            await _close_within(settings.shutdown_timeout_s, *closing)

    app = FastAPI(title="giftwheel", version=__version__, lifespan=lifespan)
    app.add_exception_handler(ApiProblem, handle_problem)
    app.add_exception_handler(ClientDisconnect, _client_left)
    ingest_http.add_routes(app.router)
    app.include_router(ingest_ws.router)
    app.include_router(health.router)
    app.include_router(feedback.router)
    app.include_router(realtime_ws.router)
    app.include_router(overlay.router)
    app.include_router(console_api.router)
    app.include_router(console_page.router)
    app.mount(f"/{SOCKETIO_PATH}", _socketio)
    return app
