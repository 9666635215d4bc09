"""Runs ansible/site.yml for real against a chroot target (community.general.chroot connection)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ops.target_root import REPO

ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent
HOST = "pi-test"
VAULT_PASSWORD = "ops-test-vault-password"
PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"


@dataclass(frozen=True)
class Recap:
    ok: int
    changed: int
    failed: int
    output: str


def ansible_env() -> dict[str, str]:
    # The chroot inherits the environment: keep this machine's pip settings out of the target.
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(REPO / "var" / "ops" / "ansible-tmp"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }


def prepare_root(base: Path, wheelhouse: Path, root: Path) -> Path:
    """A fresh copy of the cached Debian root, with what an image builder would bake in: the
    wheelhouse (the test is offline) and the board's device-tree model (a Pi 5)."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
    shutil.copytree(wheelhouse, root / "opt/giftwheel/wheelhouse")
    model = root / "proc/device-tree/model"  # /proc is not mounted in the chroot: a plain file
    model.parent.mkdir(parents=True)
    model.write_bytes(PI5_MODEL.encode() + b"\0")
    return root


def build_wheel(out_dir: Path, wheelhouse: Path) -> Path:
    """giftwheel's wheel from this checkout (never from PyPI), built offline."""
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--find-links", str(wheelhouse), "-w", str(out_dir), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out_dir.glob("giftwheel-*.whl")
    return wheel


def write_inventory(directory: Path, root: Path, wheel: Path, host_vars: dict[str, Any]) -> Path:
    """An inventory shaped like inventories/production, with the gateway token in a real vault."""
    (directory / "host_vars" / HOST).mkdir(parents=True)
    hosts = {"all": {"children": {"edge": {"hosts": {HOST: {"ansible_host": str(root)}}}}}}
    (directory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    settings = {
        "ansible_connection": "community.general.chroot",
        "giftwheel_start_services": False,  # no systemd as PID 1 in a chroot
        "common_apt_update_cache": False,  # offline: the root has the packages baked in
        "edge_giftwheel_wheel": str(wheel),
        "edge_pip_extra_args": "--no-index --find-links /opt/giftwheel/wheelhouse",
        "edge_thingsboard_host": "tb.test.invalid",
        "edge_gateway_token": "{{ vault_edge_gateway_token }}",
        **host_vars,
    }
    (directory / "host_vars" / HOST / "vars.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    password = directory / "vault-password"
    password.write_text(VAULT_PASSWORD)
    vault = directory / "host_vars" / HOST / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_edge_gateway_token": "gw-token-from-the-vault"}))
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)],
        check=True,
        capture_output=True,
        env=ansible_env(),
    )
    return directory


def update_host_vars(inventory: Path, **changes: Any) -> None:
    path = inventory / "host_vars" / HOST / "vars.yml"
    settings = yaml.safe_load(path.read_text())
    settings.update(changes)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


_RECAP = re.compile(
    rf"^{re.escape(HOST)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M
)


def run_playbook(inventory: Path, timeout_s: float = 300) -> Recap:
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory / "hosts.yml"),
            "--vault-password-file",
            str(inventory / "vault-password"),
            "--diff",
            str(ANSIBLE_DIR / "site.yml"),
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = result.stdout + result.stderr
    match = _RECAP.search(output)
    assert match, f"no play recap (rc {result.returncode}):\n{output}"
    ok, changed, failed = (int(g) for g in match.groups())
    return Recap(ok, changed, failed, output)


def in_root(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", str(root), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
