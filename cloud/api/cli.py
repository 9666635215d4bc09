"""``giftwheel api``: serve the cloud API with uvicorn (settings from GIFTWHEEL_* variables)."""

from __future__ import annotations

import argparse

import uvicorn
from pydantic import ValidationError

from cloud.settings import CloudSettings


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="API processes sharing the port")
    parser.add_argument("--log-level", default="warning", help="uvicorn's access/error log level")


def run(args: argparse.Namespace) -> int:
    try:
        CloudSettings()  # refuse to start on bad settings before forking workers
    except ValidationError as exc:
        print(f"giftwheel api: invalid settings:\n{exc}")
        return 2
    uvicorn.run(
        "cloud.api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )
    return 0
