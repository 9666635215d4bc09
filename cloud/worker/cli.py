"""``giftwheel worker``: run a worker; ``giftwheel worker dlq list|replay``: inspect the dead letters;
``giftwheel worker reshard``: make GIFTWHEEL_INGEST__STREAM_SHARDS the agreed shard count;
``giftwheel worker alive``: a container health check (the worker's alive file is fresh).

Settings come from the environment (``GIFTWHEEL_*``, e.g. ``GIFTWHEEL_WORKER__RULES_FILE``,
``GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN``) like the API's; ``--rules`` overrides the rules file.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import orjson
from pydantic import ValidationError

from cloud.agreement import SettingsDisagree
from cloud.redis_client import connect
from cloud.settings import CloudSettings
from cloud.worker.dlq import DeadLetters
from cloud.worker.liveness import alive_problem
from cloud.worker.reshard import ReshardRefused, reshard
from cloud.worker.rules import RulesError
from cloud.worker.rules_source import RulesSource
from cloud.worker.rules_store import RulesStore
from cloud.worker.settings import WorkerProcessSettings
from cloud.worker.token_lease import TokenLost, TokenUnavailable
from giftwheel import gc_tuning, logs

# sysexits' EX_CONFIG: a configuration error restarting will not fix (no free dispatcher token,
# settings that disagree with the other processes'); systemd/giftwheel-worker@.service:
# RestartPreventExitStatus.
EXIT_CONFIG = 78
EXIT_TOKEN_IN_USE = EXIT_CONFIG
# EX_TEMPFAIL: the token was taken over while running; a restart claims a token again.
EXIT_TOKEN_LOST = 75


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", type=Path, help="rules YAML file (default: GIFTWHEEL_WORKER__RULES_FILE)")
    parser.add_argument("--worker-id", help="consumer name in the group (default: host-pid-random)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    dlq = actions.add_parser("dlq", help="inspect or replay the dead-letter stream")
    dlq_actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="DLQ_ACTION")
    listing = dlq_actions.add_parser("list", help="print dead letters as JSON lines")
    listing.add_argument("--count", type=int, default=100)
    listing.add_argument("--after", default="-", help="only letters after this dead-letter id")
    replay = dlq_actions.add_parser("replay", help="put dead letters' events back on their streams")
    replay.add_argument("ids", nargs="*", help="dead-letter ids (see `dlq list`)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    actions.add_parser(
        "alive", help="exit 0 while the worker's alive file is fresh (GIFTWHEEL_WORKER__ALIVE_FILE)"
    )
    actions.add_parser(
        "reshard",
        help="record GIFTWHEEL_INGEST__STREAM_SHARDS as the shard count every process must use "
        "(refused while workers run or the old streams hold unprocessed entries)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = CloudSettings()
    except ValidationError as exc:
        print(f"giftwheel worker: bad settings: {exc}", file=sys.stderr)
        return 2
    if args.action == "alive":
        if (problem := alive_problem(settings.worker)) is not None:
            print(f"giftwheel worker alive: {problem}", file=sys.stderr)
            return 1
        return 0
    logs.configure(settings.log_level)
    if args.action == "dlq":
        return asyncio.run(_dlq(settings, args))
    if args.action == "reshard":
        return asyncio.run(_reshard(settings))
    rules_file = args.rules or settings.worker.rules_file
    if rules_file is None:
        print(
            "giftwheel worker: no rules file: pass --rules or set GIFTWHEEL_WORKER__RULES_FILE",
            file=sys.stderr,
        )
        return 2
    try:
        rules = RulesSource(rules_file)
    except RulesError as exc:
        print(f"giftwheel worker: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # uvloop is an optional speed-up (uvicorn[standard] brings it)
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_serve(settings, rules, args.worker_id))
    except SettingsDisagree as exc:
        print(f"giftwheel worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TokenUnavailable as exc:
        print(f"giftwheel worker: {exc}", file=sys.stderr)
        return EXIT_TOKEN_IN_USE
    except TokenLost as exc:
        print(f"giftwheel worker: {exc}", file=sys.stderr)
        return EXIT_TOKEN_LOST
    return 0


async def _serve(settings: WorkerProcessSettings, rules: RulesSource, worker_id: str | None) -> None:
    from prometheus_client import start_http_server

    from cloud.worker.service import Worker

    redis = connect(settings)
    worker = Worker(settings, redis, lambda: rules.current, worker_id=worker_id)
    if settings.worker.metrics_port:
        start_http_server(settings.worker.metrics_port, registry=worker.metrics.registry)
    gc_tuning.tune_for_server()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(
        rules.watch(settings.worker.rules_poll_interval_s, worker.metrics, RulesStore(redis))
    )
    try:
        await worker.run(stop)
    finally:
        watcher.cancel()
        await redis.aclose()


async def _reshard(settings: WorkerProcessSettings) -> int:
    redis = connect(settings)
    try:
        print(await reshard(redis, settings))
    except ReshardRefused as exc:
        print(f"giftwheel worker reshard: refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    return 0


async def _dlq(settings: WorkerProcessSettings, args: argparse.Namespace) -> int:
    redis = connect(settings)
    letters = DeadLetters(redis)
    try:
        if args.dlq_action == "list":
            for letter in await letters.read(args.count, args.after):
                print(
                    orjson.dumps(
                        {
                            "id": letter.dlq_id,
                            "stream": letter.stream,
                            "entryId": letter.entry_id,
                            "reason": letter.reason,
                            "deliveries": letter.deliveries,
                            "deadAt": letter.dead_at_ms,
                            "event": letter.event,
                        }
                    ).decode()
                )
            return 0
        ids = list(args.ids)
        if args.all:
            ids = [letter.dlq_id for letter in await letters.read(count=1_000_000)]
        if not ids:
            print("giftwheel worker dlq replay: name dead-letter ids or pass --all", file=sys.stderr)
            return 2
        for dlq_id, entry_id in await letters.replay(ids):
            print(f"{dlq_id} -> {entry_id}")
        return 0
    finally:
        await redis.aclose()
