"""GET /overlay: the viewer overlay page (an OBS browser source), static files, no build step."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()

_FILES = resources.files("cloud.api.overlay")
_TYPES = {
    "overlay.js": "text/javascript; charset=utf-8",
    "overlay.css": "text/css; charset=utf-8",
}


@router.get("/overlay", summary="The overlay page", response_class=Response, include_in_schema=False)
async def overlay_page() -> Response:
    html = _FILES.joinpath("index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


@router.get("/overlay/{name}", response_class=Response, include_in_schema=False)
async def overlay_asset(name: str) -> Response:
    media_type = _TYPES.get(name)
    if media_type is None:
        return Response(status_code=404)
    body = _FILES.joinpath(name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})
