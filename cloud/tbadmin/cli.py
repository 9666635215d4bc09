"""``giftwheel tb provision``: create or update giftwheel's ThingsBoard entities; print the tokens.

    GIFTWHEEL_TB_PASSWORD=... GIFTWHEEL_FEEDBACK__SECRET=... giftwheel tb provision \\
        --url https://tb.example.com --user tenant@example.com \\
        --fleet deploy/thingsboard/fleet.example.yaml --feedback-url https://api.example.com/v1/feedback/thingsboard

The tokens go to stdout as YAML (for the vault); what was created/updated goes to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

import yaml

from cloud.tbadmin.client import ThingsBoardAdmin, ThingsBoardError
from cloud.tbadmin.fleet import FleetError, load_fleet
from cloud.tbadmin.provision import ArtefactError, Artefacts, Provisioned, provision

PASSWORD_ENV = "GIFTWHEEL_TB_PASSWORD"  # noqa: S105 (a variable name, not a secret)
# The same variable the API reads its feedback secret from, so both ends agree by construction.
FEEDBACK_SECRET_ENV = "GIFTWHEEL_FEEDBACK__SECRET"  # noqa: S105


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prov = actions.add_parser("provision", help="create/update rule chain, profiles, devices; print tokens")
    prov.add_argument("--url", required=True, help="ThingsBoard base URL, e.g. https://tb.example.com")
    prov.add_argument("--user", required=True, help=f"tenant administrator (password: ${PASSWORD_ENV})")
    prov.add_argument("--fleet", type=Path, required=True, help="fleet file: dispatchers, gateways -> motors")
    prov.add_argument(
        "--dispatchers",
        type=int,
        metavar="N",
        help="dispatcher devices to have, one per cloud worker instance (default: the fleet file's count)",
    )
    prov.add_argument(
        "--feedback-url", required=True, help="where the rule chain POSTs motor telemetry (the cloud API)"
    )
    prov.add_argument(
        "--artefacts",
        type=Path,
        default=Path("deploy/thingsboard"),
        help="directory with giftwheel_rule_chain.json and device_profiles/ (default: %(default)s)",
    )
    prov.add_argument("--timeout", type=float, default=15.0, help="seconds per HTTP request")


def _secret(env: str, what: str) -> str | None:
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ") or None
    return None


def _report(result: Provisioned, url: str) -> str:
    pool = ",".join(result.dispatcher_tokens.values())
    lines = [
        f"# ThingsBoard access tokens from `giftwheel tb provision` ({url}). Secrets: keep them in a vault.",
        "# Cloud workers, one token each (ThingsBoard keeps one session per device): give each worker",
        "# instance its own as GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN (systemd: /etc/giftwheel/worker-N.env),",
        "# or all of them the pool as GIFTWHEEL_WORKER__MQTT__ACCESS_TOKENS",
        "# (compose: GIFTWHEEL_DISPATCHER_TOKENS in deploy/.env).",
        yaml.safe_dump({"giftwheel_dispatcher_tokens": result.dispatcher_tokens}, sort_keys=False).rstrip(),
        yaml.safe_dump({"giftwheel_dispatcher_token_pool": pool}).rstrip(),
        "# Ansible: inventories/<env>/group_vars/edge/vault.yml",
        yaml.safe_dump({"vault_edge_gateway_tokens": result.gateway_tokens}).rstrip(),
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    password = _secret(PASSWORD_ENV, f"ThingsBoard password for {args.user}")
    secret = _secret(FEEDBACK_SECRET_ENV, "feedback webhook secret (the API's GIFTWHEEL_FEEDBACK__SECRET)")
    if password is None or secret is None:
        missing = [
            name for name, value in ((PASSWORD_ENV, password), (FEEDBACK_SECRET_ENV, secret)) if not value
        ]
        print(f"giftwheel tb provision: set {' and '.join(missing)}", file=sys.stderr)
        return 2
    try:
        fleet = load_fleet(args.fleet, dispatchers=args.dispatchers)
        artefacts = Artefacts.load(args.artefacts)
    except (FleetError, ArtefactError) as exc:
        print(f"giftwheel tb provision: {exc}", file=sys.stderr)
        return 2
    try:
        with ThingsBoardAdmin(args.url, timeout_s=args.timeout) as admin:
            admin.login(args.user, password)
            result = provision(
                admin, fleet, artefacts, feedback_url=args.feedback_url, feedback_secret=secret
            )
    except ThingsBoardError as exc:
        print(f"giftwheel tb provision: {exc}", file=sys.stderr)
        return 2 if exc.status in (401, 403) else 1
    for change in result.changes:
        print(f"{change.action:>9}  {change.kind} {change.name}", file=sys.stderr)
    sys.stdout.write(_report(result, args.url))
    return 0
