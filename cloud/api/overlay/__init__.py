"""GET /overlay: the viewer overlay page (an OBS browser source), static files, no build step."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()

_FILES = resources.files("cloud.api.overlay")
# The page runs only its own script and style and talks only to its own origin (Chromium and
# Firefox match ws:/wss: to 'self'), so an injected tag can load or send nothing; and nothing it
# serves may be sniffed into another type.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}
_TYPES = {
    "overlay.js": "text/javascript; charset=utf-8",
    "overlay.css": "text/css; charset=utf-8",
}


@router.get("/overlay", summary="The overlay page", response_class=Response, include_in_schema=False)
async def overlay_page() -> Response:
    html = _FILES.joinpath("index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/overlay/{name}", response_class=Response, include_in_schema=False)
async def overlay_asset(name: str) -> Response:
    media_type = _TYPES.get(name)
    if media_type is None:
        return Response(status_code=404, headers=_HEADERS)
    body = _FILES.joinpath(name).read_bytes()
    return Response(body, media_type=media_type, headers=_HEADERS)
