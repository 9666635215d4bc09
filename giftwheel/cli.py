"""The ``giftwheel`` command. Each subcommand lives with its side and is imported only when run."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    """A subcommand is data: where its ``register(parser)`` and ``run(args) -> int`` live."""

    name: str
    module: str
    help: str


# Modules are named, not imported, so `giftwheel --help` loads neither side, and the edge
# (which has no cloud extra installed) can run `giftwheel edge`.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("api", "cloud.api.cli", "run the cloud ingest/feedback API"),
    Subcommand(
        "worker", "cloud.worker.cli", "run a queue worker (gifts -> MQTT RPC via ThingsBoard); dlq tools"
    ),
    Subcommand("demo", "devstack.demo", "run the pipeline locally and send sample gifts"),
    Subcommand("bench", "devstack.benchmark", "open-loop load through the whole pipeline at several rates"),
    Subcommand("source", "cloud.sources.cli", "run a gift source (tiktok @uniqueId | tikfinity) into ingest"),
    Subcommand("tb-emulator", "devstack.tb_emulator.cli", "run the ThingsBoard emulator (MQTT + HTTP side)"),
    Subcommand("edge", "edge.cli", "run the Raspberry Pi edge daemon (thingsboard-gateway + motors)"),
    Subcommand(
        "ctl",
        "cloud.console.ctl",
        "the control room from a shell: status, stop/hold/resume/cancel, test-gift, dlq",
    ),
    Subcommand("tb", "cloud.tbadmin.cli", "ThingsBoard: rule-engine queues, then devices and the rule chain"),
)


def _load(module: str) -> object:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(
            f"giftwheel: {module} cannot be loaded ({exc}); is the right extra installed?"
        ) from exc


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Subcommand]]:
    parser = argparse.ArgumentParser(prog="giftwheel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    table: dict[str, Subcommand] = {}
    for command in SUBCOMMANDS:
        sub.add_parser(command.name, help=command.help, add_help=False)
        table[command.name] = command
    return parser, table


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser, table = build_parser()
    if not args or args[0] not in table:
        parser.parse_args(args)  # prints usage or the error and exits
        return 2
    command = table[args[0]]
    module = _load(command.module)
    sub_parser = argparse.ArgumentParser(prog=f"giftwheel {command.name}", description=command.help)
    register: Callable[[argparse.ArgumentParser], None] = getattr(module, "register")  # noqa: B009
    run: Callable[[argparse.Namespace], int] = getattr(module, "run")  # noqa: B009
    register(sub_parser)
    return run(sub_parser.parse_args(args[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
