"""GET /overlay: the viewer overlay page (an OBS browser source), static files, no build step."""

from __future__ import annotations

import re
from importlib import resources

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()

_FILES = resources.files("cloud.api.overlay")
# The page runs only its own scripts and talks only to its own origin (Chromium and Firefox match
# ws:/wss: to 'self'), so an injected tag can load or send nothing; and nothing it serves may be
# sniffed into another type. Inline style is allowed: OBS applies a browser source's "Custom CSS"
# as a <style> element it adds after load (obs-browser, browser-client.cpp, OnLoadEnd), the way a
# streamer restyles the overlay; a style can fetch nothing from elsewhere either (img-src is
# 'self' and data:, fonts fall under default-src 'none').
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}
ASSET_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
}
# The page's own files: scripts, its style and one string table per language (lang-<code>.json).
ASSET_NAME = re.compile(r"[a-z0-9-]{1,40}\.(js|css|json)")
_LANG = re.compile(r"lang-[a-z0-9-]{2,20}\.json")


@router.get("/overlay", summary="The overlay page", response_class=Response, include_in_schema=False)
async def overlay_page() -> Response:
    html = _FILES.joinpath("index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/overlay/languages.json", response_class=Response, include_in_schema=False)
async def overlay_languages() -> Response:
    """The languages with a string table: the page picks among them without asking for a missing one."""
    codes = sorted(f.name[len("lang-") : -len(".json")] for f in _FILES.iterdir() if _LANG.fullmatch(f.name))
    return Response(orjson.dumps(codes), media_type=ASSET_TYPES["json"], headers=PAGE_HEADERS)


@router.get("/overlay/{name}", response_class=Response, include_in_schema=False)
async def overlay_asset(name: str) -> Response:
    asset = ASSET_NAME.fullmatch(name)
    if asset is None or not _FILES.joinpath(name).is_file():
        return Response(status_code=404, headers=PAGE_HEADERS)
    body = _FILES.joinpath(name).read_bytes()
    return Response(body, media_type=ASSET_TYPES[asset.group(1)], headers=PAGE_HEADERS)
