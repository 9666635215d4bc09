"""The emulator's REST handlers and how Starlette serves them.

A handler takes the hub and a Request and answers (status, payload): a JSON value, or a
PlainResponse where ThingsBoard's controller answers text or a bare status. Routes are
(method, path pattern, handler) triples; a path matched with another method is 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import structlog
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from devstack.tb_emulator.convert import dumps as _dumps  # values parsed from devices keep their literals

if TYPE_CHECKING:
    from devstack.tb_emulator.hub import Hub

log = structlog.get_logger("tb_emulator.http")

MAX_BODY_BYTES = 1_048_576


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PlainResponse:
    """A body as a controller answers it without JSON: a ``ResponseEntity<String>`` message, or a
    bare status (an empty body)."""

    text: str = ""


@dataclass(slots=True)
class Request:
    query: dict[str, list[str]]  # parse_qs: blank values left out
    body: bytes
    params: dict[str, str]
    headers: dict[str, str]  # names lower-cased

    def json(self) -> Any:
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None


Result = tuple[int, Any]
Handler = Callable[["Hub", Request], Awaitable[Result]]
Routes = Sequence[tuple[str, str, Handler]]


def app(hub: Hub, routes: Routes) -> Starlette:
    """The routes as a Starlette app; unknown paths, other methods and handler failures answer JSON."""
    starlette = Starlette(
        routes=[Route(path, _endpoint(hub, handler), methods=[method]) for method, path, handler in routes],
        exception_handlers={404: _no_route, 405: _not_allowed},
    )
    starlette.router.redirect_slashes = False  # "/api/devices/" is no route, not a redirect
    return starlette


def _endpoint(hub: Hub, handler: Handler) -> Callable[[StarletteRequest], Awaitable[Response]]:
    async def endpoint(request: StarletteRequest) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _response(413, {"error": "body too large"})
        req = Request(parse_qs(request.url.query), bytes(body), request.path_params, dict(request.headers))
        try:
            return _response(*await handler(hub, req))
        except HttpError as exc:
            return _response(exc.status, {"error": str(exc)})
        except Exception as exc:
            log.exception("http handler failed", path=request.url.path)
            return _response(500, {"error": f"{type(exc).__name__}: {exc}"})

    return endpoint


async def _no_route(request: StarletteRequest, exc: Exception) -> Response:
    return _response(404, {"error": f"no route {request.url.path}"})


async def _not_allowed(request: StarletteRequest, exc: Exception) -> Response:
    return _response(405, {"error": f"{request.method} not allowed on {request.url.path}"})


def _response(status: int, payload: Any) -> Response:
    if isinstance(payload, PlainResponse):  # a controller's String body, or none
        return Response(payload.text, status, media_type="text/plain;charset=UTF-8")
    return Response(_dumps(payload), status, media_type="application/json")
