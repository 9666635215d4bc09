"""ansible/ passes ansible-lint at the production profile and every inventory passes --syntax-check."""

from __future__ import annotations

import subprocess

import pytest

from tests.ops.playbook import ANSIBLE_DIR, BIN, ansible_env

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
