"""``giftwheel api``: serve the cloud API with uvicorn (settings from GIFTWHEEL_* variables)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from cloud.api.app import create_app
from cloud.api.liveness import HealthProbe, probe_url
from cloud.api.settings import ApiSettings
from cloud.settings import CloudSettings
from giftwheel import gc_tuning, logs


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="API processes sharing the port")
    parser.add_argument("--log-level", default="warning", help="uvicorn's access/error log level")
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=10,
        help="seconds to let requests under way finish on SIGTERM before closing them",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = CloudSettings()  # refuse to start on bad settings before forking workers
    except ValidationError as exc:
        print(f"giftwheel api: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if (problem := settings.ingest_auth_problem()) is not None:
        print(f"giftwheel api: {problem}", file=sys.stderr)
        return 2
    HealthProbe(probe_url(args.host, args.port)).start()  # systemd's READY=1 and watchdog
    uvicorn.run(
        "cloud.api.cli:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # httptools, plus head and body deadlines, a head size bound and a connection cap.
        http="cloud.api.guarded_http:GuardedHttpToolsProtocol",
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=args.graceful_timeout,
        # The client's address from X-Forwarded-For, believed only from the reverse proxy.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
        **websocket_options(settings),
    )
    return 0


def websocket_options(settings: ApiSettings) -> dict[str, Any]:
    """uvicorn's WebSocket options, for `giftwheel api` and for tests that serve the app the same way."""
    return {
        # uvicorn's websockets-sansio, plus direct frames for the viewers' fan-out.
        "ws": "cloud.realtime.direct_frames:DirectFramesProtocol",
        "ws_per_message_deflate": settings.realtime.permessage_deflate,
        # Frames above this never reach the app; the app's own limit answers below it with 1009.
        "ws_max_size": settings.ingest.max_ws_frame_bytes + 1024,
    }


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings read from the environment at start, not import."""
    settings = CloudSettings()
    logs.configure(settings.log_level)
    app = create_app(settings)
    gc_tuning.tune_for_server()
    return app
