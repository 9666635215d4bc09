"""``giftwheel source tiktok @uniqueId``, ``... tikfinity --url ws://...`` and ``... jsonl FILE``.

Each source is its own process feeding the ingest API's WebSocket (GIFTWHEEL_API_URL,
GIFTWHEEL_API_KEY); other settings come from GIFTWHEEL_* variables (cloud/sources/settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TextIO

from pydantic import ValidationError

from cloud.sources.ingest_client import IngestClient
from cloud.sources.jsonl import JsonLinesSource
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.runner import run_source
from cloud.sources.settings import SourceSettings
from cloud.sources.tikfinity import TikFinitySource
from cloud.sources.tiktok import SourceUnavailable, TikTokSource, load_library
from giftwheel import logs
from giftwheel.clock import SystemClock


def register(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    tiktok = kinds.add_parser("tiktok", help="TikTok LIVE through TikTokLive (extra `tiktok`, AGPL-3.0)")
    tiktok.add_argument("unique_id", help="the streamer's @handle")
    tikfinity = kinds.add_parser("tikfinity", help="TikFinity's local WebSocket event feed")
    tikfinity.add_argument(
        "--url", help="TikFinity's feed (default GIFTWHEEL_TIKFINITY__URL or ws://127.0.0.1:21213)"
    )
    tikfinity.add_argument("--channel", help="streamer name for the events (default: TikFinity's username)")
    jsonl = kinds.add_parser("jsonl", help="normalised gift events, one JSON object per line")
    jsonl.add_argument("file", type=argparse.FileType("r", encoding="utf-8"), help="a file, or - for stdin")
    jsonl.add_argument("--channel", default="jsonl", help="name of this source in metrics")
    for sub in (tiktok, tikfinity, jsonl):
        sub.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")


def run(args: argparse.Namespace) -> int:
    overrides = {} if args.metrics_port is None else {"metrics_port": args.metrics_port}
    try:
        settings = SourceSettings(**overrides)
    except ValidationError as exc:
        print(f"giftwheel source: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if args.kind == "tiktok":
        return _run_tiktok(settings, args.unique_id.lstrip("@"))
    if args.kind == "jsonl":
        return _run_jsonl(settings, args.file, args.channel)
    return _run_tikfinity(settings, args.url or settings.tikfinity.url, args.channel)


def _run_tiktok(settings: SourceSettings, unique_id: str) -> int:
    try:
        library = load_library()
    except SourceUnavailable as exc:
        print(f"giftwheel source tiktok: {exc}", file=sys.stderr)
        return 2

    def source(
        pipeline: GiftPipeline, _ingest: IngestClient, metrics: SourceMetrics, clock: SystemClock
    ) -> Coroutine[Any, Any, None]:
        return TikTokSource(
            settings.tiktok,
            unique_id=unique_id,
            pipeline=pipeline,
            metrics=metrics,
            clock=clock,
            library=library,
        ).run()

    return asyncio.run(run_source(settings, name="tiktok", channel=unique_id, source=source))


def _run_tikfinity(settings: SourceSettings, url: str, channel: str | None) -> int:
    def source(
        pipeline: GiftPipeline, _ingest: IngestClient, metrics: SourceMetrics, clock: SystemClock
    ) -> Coroutine[Any, Any, None]:
        return TikFinitySource(
            settings.tikfinity, url=url, pipeline=pipeline, metrics=metrics, clock=clock
        ).run()

    return asyncio.run(run_source(settings, name="tikfinity", channel=channel or "tikfinity", source=source))


def _run_jsonl(settings: SourceSettings, stream: TextIO, channel: str) -> int:
    def source(
        _pipeline: GiftPipeline, ingest: IngestClient, metrics: SourceMetrics, clock: SystemClock
    ) -> Coroutine[Any, Any, None]:
        return JsonLinesSource(
            stream, ingest=ingest, bounds=settings.bounds, clock=clock, metrics=metrics
        ).run()

    return asyncio.run(run_source(settings, name="jsonl", channel=channel, source=source))
