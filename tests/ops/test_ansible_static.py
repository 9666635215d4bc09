"""ansible/ passes ansible-lint at the production profile and every inventory passes --syntax-check."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.ops.playbook import ANSIBLE_DIR, BIN, ansible_env
from tests.ops.target_root import REPO

pytestmark = pytest.mark.slow

INVENTORIES = sorted(p.name for p in (ANSIBLE_DIR / "inventories").iterdir())


def test_inventories_follow_the_sample_layout() -> None:
    assert INVENTORIES == ["production", "staging"]
    for name in INVENTORIES:
        assert (ANSIBLE_DIR / "inventories" / name / "hosts.yml").is_file()
        assert (ANSIBLE_DIR / "inventories" / name / "group_vars" / "edge").is_dir()


def test_ansible_lint_production_profile() -> None:
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--project-dir", ".", "--profile", "production"],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output


def test_the_role_installs_the_edge_unit_of_systemd() -> None:
    """One unit to maintain: the role's file is a link to systemd/'s, which ansible's copy follows
    (the playbook test checks the installed unit equals it)."""
    role_unit = ANSIBLE_DIR / "roles/edge/files/giftwheel-edge.service"
    assert role_unit.is_symlink()
    assert role_unit.resolve() == (REPO / "systemd/giftwheel-edge.service").resolve()


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_syntax_check(inventory: str) -> None:
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "-i",
            f"inventories/{inventory}/hosts.yml",
            "site.yml",
        ],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ops_tests_run_the_pinned_newest_ansible_core() -> None:
    """The dev extra pins the newest ansible-core series the playbook supports; the ansible-playbook
    these tests run must be that one, not an older one left in the venv."""
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    (pin,) = [Requirement(r) for r in dev if Requirement(r).name == "ansible-core"]
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--version"],
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    match = re.search(r"\[core ([\d.]+)\]", result.stdout)
    assert match, result.stdout
    assert match.group(1) in pin.specifier, (match.group(1), str(pin))
    assert Version(match.group(1)) >= Version("2.19")
