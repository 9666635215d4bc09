"""The edge role's board table, run by Ansible itself: which GPIO library each board model gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ops.playbook import ANSIBLE_DIR, BIN, ansible_env

pytestmark = pytest.mark.slow

BOARDS: dict[str, str | None] = {
    "pi5": "Raspberry Pi 5 Model B Rev 1.0",
    "cm5": "Raspberry Pi Compute Module 5 Rev 1.0",
    "pi4": "Raspberry Pi 4 Model B Rev 1.5",
    "pi400": "Raspberry Pi 400 Rev 1.0",
    "cm4": "Raspberry Pi Compute Module 4 Rev 1.1",
    "pi3": "Raspberry Pi 3 Model B Plus Rev 1.3",
    "zero2": "Raspberry Pi Zero 2 W Rev 1.0",
}
# Every supported board gets lgpio, which installs as a wheel (aarch64, armv7l): nothing to compile.
LGPIO = {"backend": "lgpio", "packages": ["lgpio"]}


def choose(tmp_path: Path, hosts: dict[str, str | None], **extra: object) -> tuple[int, str]:
    """Runs only roles/edge/tasks/board.yml on local pseudo-hosts, one model file each."""
    host_vars = {}
    for name, model in hosts.items():
        path = tmp_path / f"{name}.model"
        if model is not None:
            path.write_bytes(model.encode() + b"\0")
        host_vars[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "edge_model_file": str(path),
        }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": host_vars}}))
    out = tmp_path / "choice"
    playbook = tmp_path / "choose.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Choose",
                    "hosts": "all",
                    "gather_facts": False,
                    "vars": {"edge_simulation": False, **extra},
                    "tasks": [
                        {
                            "name": "Board",
                            "ansible.builtin.include_role": {"name": "edge", "tasks_from": "board"},
                        },
                        {
                            "name": "Record",
                            "ansible.builtin.copy": {
                                "content": "{{ {'backend': edge_gpio_backend, 'packages': edge_gpio_packages}"
                                " | to_json }}",
                                "dest": f"{out}-{{{{ inventory_hostname }}}}.json",
                                "mode": "0644",
                            },
                        },
                    ],
                }
            ]
        )
    )
    env = {**ansible_env(), "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles")}
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_each_board_gets_the_library_that_drives_it(tmp_path: Path) -> None:
    code, output = choose(tmp_path, BOARDS)
    assert code == 0, output
    for name in BOARDS:
        assert json.loads((tmp_path / f"choice-{name}.json").read_text()) == LGPIO, name


def test_an_armv6_board_without_an_lgpio_wheel_is_refused(tmp_path: Path) -> None:
    code, output = choose(
        tmp_path, {"zero": "Raspberry Pi Zero W Rev 1.1", "pi1": "Raspberry Pi Model B Rev 2"}
    )
    assert code != 0
    assert "no GPIO backend for board Raspberry Pi Zero W Rev 1.1" in output
    assert "no GPIO backend for board Raspberry Pi Model B Rev 2" in output


def test_an_unknown_board_stops_the_play_unless_simulated(tmp_path: Path) -> None:
    code, output = choose(tmp_path, {"rockpi": "Radxa ROCK 5B", "nomodel": None})
    assert code != 0
    assert "no GPIO backend for board Radxa ROCK 5B" in output
    assert "no GPIO backend for board (unknown)" in output
    code, output = choose(tmp_path, {"rockpi": "Radxa ROCK 5B"}, edge_simulation=True)
    assert code == 0, output
    assert json.loads((tmp_path / "choice-rockpi.json").read_text()) == {
        "backend": "gpiozero",
        "packages": [],
    }
