"""``giftwheel tb``: set up giftwheel on a ThingsBoard.

``giftwheel tb queues`` (as the system administrator; once per ThingsBoard, before provision) creates or
updates the rule-engine queues the device profiles name::

    GIFTWHEEL_TB_SYSADMIN_PASSWORD=... giftwheel tb queues --url https://tb.example.com \\
        --user sysadmin@thingsboard.org

``giftwheel tb provision`` (as the tenant administrator) creates or updates giftwheel's entities and
prints the tokens::

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
from cloud.tbadmin.provision import ArtefactError, Artefacts, Change, Provisioned, provision
from cloud.tbadmin.queues import QueueArtefacts, ensure_queues

PASSWORD_ENV = "GIFTWHEEL_TB_PASSWORD"  # noqa: S105 (a variable name, not a secret)
SYSADMIN_PASSWORD_ENV = "GIFTWHEEL_TB_SYSADMIN_PASSWORD"  # noqa: S105
# The same variable the API reads its feedback secret from, so both ends agree by construction.
FEEDBACK_SECRET_ENV = "GIFTWHEEL_FEEDBACK__SECRET"  # noqa: S105


def _server_arguments(action: argparse.ArgumentParser, user: str, password_env: str) -> None:
    action.add_argument("--url", required=True, help="ThingsBoard base URL, e.g. https://tb.example.com")
    action.add_argument("--user", required=True, help=f"{user} (password: ${password_env})")
    action.add_argument("--timeout", type=float, default=15.0, help="seconds per HTTP request")


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prov = actions.add_parser("provision", help="create/update rule chain, profiles, devices; print tokens")
    _server_arguments(prov, "tenant administrator", PASSWORD_ENV)
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
    queues = actions.add_parser(
        "queues", help="create/update the rule-engine queues the profiles name (system administrator)"
    )
    _server_arguments(queues, "ThingsBoard's system administrator", SYSADMIN_PASSWORD_ENV)
    queues.add_argument(
        "--queues",
        type=Path,
        default=Path("deploy/thingsboard/queues"),
        help="directory of ThingsBoard Queue JSON files (default: %(default)s)",
    )


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


def _print_changes(changes: list[Change]) -> None:
    for change in changes:
        print(f"{change.action:>9}  {change.kind} {change.name}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.action == "queues":
        return run_queues(args)
    return run_provision(args)


def run_queues(args: argparse.Namespace) -> int:
    password = _secret(SYSADMIN_PASSWORD_ENV, f"ThingsBoard password for {args.user}")
    if password is None:
        print(f"giftwheel tb queues: set {SYSADMIN_PASSWORD_ENV}", file=sys.stderr)
        return 2
    try:
        artefacts = QueueArtefacts.load(args.queues)
    except ArtefactError as exc:
        print(f"giftwheel tb queues: {exc}", file=sys.stderr)
        return 2
    try:
        with ThingsBoardAdmin(args.url, timeout_s=args.timeout) as admin:
            admin.login(args.user, password)
            result = ensure_queues(admin, artefacts)
    except ThingsBoardError as exc:
        print(f"giftwheel tb queues: {exc}", file=sys.stderr)
        if exc.status == 403:
            print(
                f"giftwheel tb queues: {args.user} may not save queues: only ThingsBoard's system"
                " administrator may (sysadmin@thingsboard.org on a fresh install), not a tenant's",
                file=sys.stderr,
            )
        return 2 if exc.status in (401, 403) else 1
    _print_changes(result.changes)
    for warning in result.warnings:
        print(f"giftwheel tb queues: warning: {warning}", file=sys.stderr)
    return 0


def run_provision(args: argparse.Namespace) -> int:
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
    _print_changes(result.changes)
    sys.stdout.write(_report(result, args.url))
    return 0
