"""``giftwheel ctl``: the control room from a shell, against a deployment's URL (for scripts and 3 a.m.).

Logs in as an operator (the console's credentials, never an ingest API key), keeps the session
cookie and its CSRF token for the one command, prints what happened (``--json``: the API's answer
as it came) and exits non-zero when the action failed or was refused.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from cloud.console.passwords import hash_password

URL_ENV = "GIFTWHEEL_CTL_URL"
USER_ENV = "GIFTWHEEL_CTL_USER"
PASSWORD_ENV = "GIFTWHEEL_CTL_PASSWORD"  # noqa: S105 (the variable's name, not a password)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A control request may wait for a motor whose Pi is offline (the API's control_confirm_timeout_s).
_TIMEOUT_S = 60.0


class CtlError(Exception):
    """The command could not be carried out; the message says why, for the operator."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get(URL_ENV), help=f"the deployment (default: ${URL_ENV})"
    )
    parser.add_argument(
        "--user", default=os.environ.get(USER_ENV), help=f"operator name (default: ${USER_ENV})"
    )
    parser.add_argument("--json", action="store_true", help="print the API's answers as JSON")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("status", help="each motor, its hold and work; ingest rate, backlog, lag, dead letters")
    for verb, what in (
        ("stop", "halt now and cancel the motor's held and queued work (stays held)"),
        ("hold", "halt now and keep the work; new gifts are held"),
        ("resume", "lift the hold; the held work turns once"),
        ("cancel", "cancel the held work (the hold stays)"),
    ):
        command = sub.add_parser(verb, help=what)
        command.add_argument("device", help="a motor's device name, or '*' for all motors")
        command.add_argument("--reason", default="", help="why (kept in the audit stream)")
    gift = sub.add_parser("test-gift", help="send a gift marked as a test through the real pipeline")
    gift.add_argument("--gift", default="Test gift", help="gift name (the rules route by it)")
    gift.add_argument("--diamond", type=int, default=1)
    gift.add_argument("--quantity", type=int, default=1)
    dlq = sub.add_parser("dlq", help="list the dead letters, or replay them")
    dlq.add_argument("dlq_action", nargs="?", choices=["list", "replay"], default="list")
    dlq.add_argument("ids", nargs="*", help="dead-letter ids to replay")
    dlq.add_argument("--all", action="store_true", help="replay all")
    rules = sub.add_parser("rules", help="show the rules, or upload a rules YAML file")
    rules.add_argument("file", nargs="?", type=Path, help="a rules YAML file to upload")
    sub.add_parser("audit", help="the newest actions in the audit stream")
    sub.add_parser("hash-password", help="print a password hash for GIFTWHEEL_CONSOLE__OPERATORS")


def run(args: argparse.Namespace) -> int:
    if args.action == "hash-password":
        return _hash_password()
    try:
        with _session(args) as client:
            return _ACTIONS[args.action](client, args)
    except CtlError as exc:
        print(f"giftwheel ctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except httpx.HTTPError as exc:
        print(f"giftwheel ctl: {args.url} not reachable: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _hash_password() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("giftwheel ctl: the passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("giftwheel ctl: empty password", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK


class _Client:
    def __init__(self, http: httpx.Client, csrf: str) -> None:
        self.http = http
        self.csrf = csrf

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        sent = {**(headers or {}), **({"X-CSRF-Token": self.csrf} if method != "GET" else {})}
        return self.http.request(method, f"/v1/console/{path}", headers=sent, **kwargs)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(httpx.HTTPError):  # unanswered, the session expires by itself
            self.call("POST", "logout")
        self.http.close()


def _session(args: argparse.Namespace) -> _Client:
    if not args.url:
        raise CtlError(f"no deployment: pass --url or set {URL_ENV}")
    if not args.user:
        raise CtlError(f"no operator: pass --user or set {USER_ENV}")
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise CtlError(f"no password: set {PASSWORD_ENV} or run on a terminal")
        password = getpass.getpass(f"password for {args.user}: ")
    http = httpx.Client(base_url=args.url.rstrip("/"), timeout=_TIMEOUT_S)
    answer = http.post("/v1/console/login", json={"user": args.user, "password": password})
    if answer.status_code != 200:
        http.close()
        raise CtlError(f"login refused: {_problem(answer)}")
    return _Client(http, answer.json()["csrf"])


def _problem(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        detail = "; ".join(f"{d.get('field')}: {d.get('reason')}" for d in detail if isinstance(d, dict))
    return f"HTTP {answer.status_code}: {detail}"


def _emit(args: argparse.Namespace, body: Any, text: str) -> None:
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() if args.json else text)


def _checked(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        raise CtlError(_problem(answer))
    return answer.json()


def _ago(ms: int | None, now_ms: int) -> str:
    """How long before the status was read, both times the server's."""
    if ms is None:
        return "-"
    s = max(0, (now_ms - ms) // 1000)
    return f"{s} s ago" if s < 60 else f"{s // 60} min ago" if s < 3600 else f"{s // 3600} h ago"


def _status(client: _Client, args: argparse.Namespace) -> int:
    body = _checked(client.call("GET", "status"))
    now_ms = body["atMs"]
    figures = [f"backlog {body['backlog']}", f"worker lag {body['workerLagMs'] / 1000:.1f} s"]
    if body["ingestPerS"] is not None:  # None on the first read: nothing to count against yet
        figures.append(f"ingest {body['ingestPerS']:.1f}/s")
    figures.append(f"dead letters {body['dlqSize']}")
    lines = ["  ".join(figures)]
    if body["allHeld"]:
        lines.append(f"ALL MOTORS HELD by {body['allHeld']['by']}: {body['allHeld']['reason']}")
    lines.append(
        f"{'MOTOR':<16} {'LINK':<8} {'STATE':<17} {'COMMAND':<12} {'QUEUED':>6} {'HELD':>4} "
        f"{'FAILED':>6}  {'LAST DONE':<11} HOLD"
    )
    for motor in body["motors"]:
        current = motor["current"]
        command = f"{current['roundsDone'] or 0}/{current['rounds']}" if current else "-"
        hold = f"{motor['hold']['by']}: {motor['hold']['reason']}" if motor["hold"] else "-"
        last = _ago(motor["lastDone"]["atMs"], now_ms) if motor["lastDone"] else "-"
        lines.append(
            f"{motor['device']:<16} {'online' if motor['online'] else 'OFFLINE':<8} "
            f"{motor['state'] or 'unknown':<17} {command:<12} {motor['queuedRounds'] or 0:>6} "
            f"{motor['heldCommands']:>4} {motor['totals']['failed']:>6}  {last:<11} {hold}"
        )
    _emit(args, body, "\n".join(lines))
    return EXIT_OK


def _control(client: _Client, args: argparse.Namespace) -> int:
    answer = client.call(
        "POST", "control", json={"action": args.action, "device": args.device, "reason": args.reason}
    )
    if answer.status_code == 202:
        body = answer.json()
        _emit(args, body, f"{args.action} {args.device}: {body['detail']}")
        return EXIT_FAILED
    if answer.status_code != 200:
        if args.json:
            _emit(args, answer.json(), "")
        raise CtlError(f"{args.action} {args.device} refused: {_problem(answer)}")
    body = answer.json()
    lines = [f"{args.action} {args.device}: {'done' if body['ok'] else 'NOT fully done'}"]
    for motor in body["motors"]:
        counts = ", ".join(
            f"{n} {k}"
            for k, n in (
                ("held", motor["heldCommands"]),
                ("cancelled", motor["cancelledCommands"]),
                ("requeued", motor["requeuedCommands"]),
            )
            if n
        )
        lines.append(
            f"  {motor['device']}: {'ok' if motor['ok'] else 'NOT ok'} {motor['detail']} {counts}".rstrip()
        )
    _emit(args, body, "\n".join(lines))
    return EXIT_OK if body["ok"] else EXIT_FAILED


def _test_gift(client: _Client, args: argparse.Namespace) -> int:
    body = _checked(
        client.call(
            "POST",
            "test-gift",
            json={"giftName": args.gift, "diamond": args.diamond, "quantity": args.quantity},
        )
    )
    _emit(args, body, f"test gift accepted: {body['eventId']}")
    return EXIT_OK


def _dlq(client: _Client, args: argparse.Namespace) -> int:
    if args.dlq_action == "replay":
        if not args.ids and not args.all:
            raise CtlError("dlq replay: name dead-letter ids or pass --all")
        body = _checked(client.call("POST", "dlq/replay", json={"ids": args.ids, "all": args.all}))
        text = f"replayed {len(body['replayed'])}" + (
            f"; not found: {' '.join(body['missing'])}" if body["missing"] else ""
        )
        _emit(args, body, text)
        return EXIT_OK if not body["missing"] else EXIT_FAILED
    body = _checked(client.call("GET", "dlq"))
    lines = [f"{body['size']} dead letters"]
    lines += [f"{x['id']}  {x['deliveries']}x  {x['reason']}  {x['event'][:80]}" for x in body["letters"]]
    _emit(args, body, "\n".join(lines))
    return EXIT_OK


def _rules(client: _Client, args: argparse.Namespace) -> int:
    if args.file is None:
        body = _checked(client.call("GET", "rules"))
        text = (
            body["yaml"]
            if body["yaml"] is not None
            else "(no uploaded rules: the workers' rules file is in force)"
        )
        _emit(args, body, text)
        return EXIT_OK
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        raise CtlError(f"{args.file}: {exc.strerror or exc}") from None
    answer = client.call("PUT", "rules", content=content, headers={"Content-Type": "text/yaml"})
    body = _checked(answer)
    _emit(args, body, f"rules uploaded: version {body['version']}, {body['rules']} rules")
    return EXIT_OK


def _audit(client: _Client, args: argparse.Namespace) -> int:
    body = _checked(client.call("GET", "audit"))
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e['atMs'] / 1000))}  {e['who'] or '?':<16} "
        f"{e['action']:<20} {e['result']:<11} {orjson.dumps(e['detail']).decode()}"
        for e in body["entries"]
    ]
    _emit(args, body, "\n".join(lines))
    return EXIT_OK


_ACTIONS = {
    "status": _status,
    "stop": _control,
    "hold": _control,
    "resume": _control,
    "cancel": _control,
    "test-gift": _test_gift,
    "dlq": _dlq,
    "rules": _rules,
    "audit": _audit,
}
