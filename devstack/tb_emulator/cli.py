"""``giftwheel tb-emulator``: run the ThingsBoard emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from giftwheel import logs


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="MQTT port (0: any free port)")
    parser.add_argument("--http-port", type=int, default=8080, help="HTTP side port (0: any free port)")
    parser.add_argument("--devices", type=Path, required=True, help="devices YAML file")
    parser.add_argument(
        "--rule-chain",
        type=Path,
        action="append",
        help="rule chain export JSON; repeat for several (the one marked root, or the only one, is the root"
        " chain; device profiles in --devices name the others). Default: ThingsBoard's stock root chain"
        " and the shipped giftwheel chain",
    )
    parser.add_argument("--webhook-url", help="override the REST API call node URL")
    parser.add_argument("--webhook-secret", help="override the webhook secret header value")
    parser.add_argument("--client-rpc-timeout-s", type=float, default=60.0, help="CLIENT_SIDE_RPC_TIMEOUT")
    parser.add_argument(
        "--delivery-timeout-s", type=float, default=10.0, help="MQTT_TIMEOUT (RPC PUBACK wait)"
    )
    parser.add_argument("--rpc-max-retries", type=int, default=5, help="ACTORS_RPC_MAX_RETRIES")
    parser.add_argument("--max-payload-bytes", type=int, default=65_536, help="NETTY_MAX_PAYLOAD_SIZE")
    parser.add_argument(
        "--session-inactivity-timeout-s",
        type=float,
        default=600.0,
        help="TB_TRANSPORT_SESSIONS_INACTIVITY_TIMEOUT",
    )
    parser.add_argument(
        "--max-concurrent-sessions-per-device",
        type=_at_least_one,
        default=1,
        help="ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE: a session more evicts the device's oldest",
    )
    parser.add_argument(
        "--json-type-cast-enabled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="JSON_TYPE_CAST_ENABLED: numeric strings in telemetry/attributes become numbers",
    )
    parser.add_argument(
        "--json-max-string-value-length",
        type=int,
        default=0,
        help="JSON_MAX_STRING_VALUE_LENGTH: longer string values are refused (0: no limit)",
    )
    parser.add_argument(
        "--history-per-device", type=int, default=10_000, help="telemetry groups kept per device"
    )
    parser.add_argument("--rpc-records-kept", type=int, default=100_000, help="server-side RPC records kept")
    parser.add_argument(
        "--queue",
        type=Path,
        action="append",
        default=[],
        help="a rule-engine queue in ThingsBoard's Queue JSON (the body of POST /api/queues), added to"
        " Main, HighPriority and SequentialByOriginator or replacing the one of its name; repeat for several",
    )
    parser.add_argument(
        "--core-poll-interval-ms",
        type=_at_least_one,
        default=25,
        help="TB_QUEUE_CORE_POLL_INTERVAL_MS: the core queue's consumers sleep this after an empty poll",
    )
    parser.add_argument(
        "--transport-poll-interval-ms",
        type=_at_least_one,
        default=25,
        help="TB_QUEUE_TRANSPORT_NOTIFICATIONS_POLL_INTERVAL_MS: likewise the transport notifications'",
    )
    from devstack.tb_emulator.versions import DEFAULT_TB_VERSION, TbVersion

    parser.add_argument(
        "--thingsboard-version",
        choices=[v.value for v in TbVersion],
        default=DEFAULT_TB_VERSION.value,
        help="the ThingsBoard whose rule node versions, configuration schemas and upgrades-on-save to"
        f" follow (default {DEFAULT_TB_VERSION.value}, as deploy/compose.yaml runs)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--ready-file", type=Path, help="write 'mqtt_port http_port' here once listening")


def run(args: argparse.Namespace) -> int:
    from devstack.tb_emulator.chains import STOCK_ROOT_CHAIN
    from devstack.tb_emulator.convert import JsonSettings
    from devstack.tb_emulator.devices import DevicesFileError, load_devices_file
    from devstack.tb_emulator.hub import HubSettings
    from devstack.tb_emulator.queues import QueueError, load_queue_file, with_queues
    from devstack.tb_emulator.rule_engine import ChainError
    from devstack.tb_emulator.server import SHIPPED_CHAIN, Emulator, EmulatorSettings
    from devstack.tb_emulator.transport_queues import TransportQueueSettings
    from devstack.tb_emulator.versions import TbVersion

    logs.configure(args.log_level)
    try:
        queues = with_queues(load_queue_file(path) for path in args.queue)
    except QueueError as exc:
        print(f"giftwheel tb-emulator: {exc}", file=sys.stderr)
        return 2
    settings = EmulatorSettings(
        host=args.host,
        mqtt_port=args.mqtt_port,
        http_port=args.http_port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        hub=HubSettings(
            max_packet_bytes=args.max_payload_bytes,
            client_rpc_timeout_s=args.client_rpc_timeout_s,
            delivery_timeout_s=args.delivery_timeout_s,
            rpc_max_retries=args.rpc_max_retries,
            session_inactivity_timeout_s=args.session_inactivity_timeout_s,
            max_concurrent_sessions_per_device=args.max_concurrent_sessions_per_device,
            json=JsonSettings(args.json_type_cast_enabled, args.json_max_string_value_length),
            history_per_device=args.history_per_device,
            rpc_records_kept=args.rpc_records_kept,
            thingsboard_version=TbVersion(args.thingsboard_version),
            queues=tuple(queues),
            transport_queues=TransportQueueSettings(
                core_poll_interval_ms=args.core_poll_interval_ms,
                transport_poll_interval_ms=args.transport_poll_interval_ms,
            ),
        ),
    )
    try:
        chains = args.rule_chain or [STOCK_ROOT_CHAIN, SHIPPED_CHAIN]
        emulator = Emulator.from_files(settings, load_devices_file(args.devices), chains)
    except (DevicesFileError, ChainError) as exc:
        print(f"giftwheel tb-emulator: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await emulator.start()
        # Everything loaded so far lives as long as the process: take it out of the collector's
        # view, or each full collection walks it (pauses of 100+ ms measured under RPC load).
        gc.collect()
        gc.freeze()
        if args.ready_file is not None:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(f"{emulator.mqtt_port} {emulator.http_port}\n")
            tmp.replace(args.ready_file)
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(main())
    except OSError as exc:  # the port is taken, the address is not ours, ...
        print(f"giftwheel tb-emulator: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 2
    return 0
