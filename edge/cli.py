"""``giftwheel edge --config FILE``: the daemon that runs on every Pi."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from giftwheel import logs


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="edge config file (YAML)")


def run(args: argparse.Namespace) -> int:
    from edge.errors import EXIT_CONFIG, ConfigError, PinBackendError
    from edge.settings import load_settings

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"giftwheel edge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    from edge import daemon

    try:
        return daemon.run(settings)
    except (ConfigError, PinBackendError) as exc:
        print(f"giftwheel edge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
