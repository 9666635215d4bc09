"""GET /console: the control room page, static files served like the overlay's, under the same CSP."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from cloud.api.overlay import ASSET_NAME, ASSET_TYPES, PAGE_HEADERS

router = APIRouter()

_FILES = resources.files("cloud.api.console")
# The page may never be framed (clickjacking of its buttons), nor leak its address to others.
_HEADERS = {**PAGE_HEADERS, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
_HEADERS["Content-Security-Policy"] += "; frame-ancestors 'none'"


@router.get("/console", summary="The control room page", response_class=Response, include_in_schema=False)
async def console_page() -> Response:
    html = _FILES.joinpath("index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/console/{name}", response_class=Response, include_in_schema=False)
async def console_asset(name: str) -> Response:
    asset = ASSET_NAME.fullmatch(name)
    if asset is None or not _FILES.joinpath(name).is_file():
        return Response(status_code=404, headers=_HEADERS)
    return Response(
        _FILES.joinpath(name).read_bytes(), media_type=ASSET_TYPES[asset.group(1)], headers=_HEADERS
    )
