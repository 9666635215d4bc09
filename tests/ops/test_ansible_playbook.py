"""A REAL run of ansible/site.yml against a Debian root through Ansible's chroot connection, then
assertions on what it installed and rendered, and a second run that must change nothing.

Honest limits: systemd is not PID 1 in a chroot, so the roles run as an image builder would
(giftwheel_start_services: false): units are installed and enabled, nothing is started. The apt
packages are baked into the cached root (the tests are offline), so the apt tasks find them present.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml

from devstack import waiting
from devstack.ports import free_port
from devstack.tb_emulator.harness import EmulatorProcess
from tests.ops.booted import BootedRoot, BootError
from tests.ops.playbook import (
    HOST,
    Recap,
    build_wheel,
    in_root,
    prepare_root,
    run_playbook,
    update_host_vars,
    write_inventory,
)
from tests.ops.target_root import PI_MACHINES, REPO, ensure_base_root, ensure_pi_wheels, ensure_wheelhouse
from tests.ops.units import verify

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the chroot connection needs root (CI runs as root)"),
]

MOTORS = [
    {"name": "motor_07", "driver": "a4988", "pins": {"step": 17, "dir": 27, "enable": 22},
     "steps_per_round": 200, "microstepping": 16, "max_step_rate_sps": 3200, "acceleration_sps2": 6400},
    {"name": "motor_08", "driver": "uln2003", "pins": {"coils": [5, 6, 13, 19]},
     "steps_per_round": 2048, "microstepping": 2, "max_step_rate_sps": 1000, "acceleration_sps2": 2000,
     "direction": "ccw"},
]  # fmt: skip


@dataclass
class Target:
    root: Path
    inventory: Path
    first: Recap
    second: Recap


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    work = tmp_path_factory.mktemp("ops-ansible")
    wheelhouse = ensure_wheelhouse()
    root = prepare_root(ensure_base_root(), wheelhouse, work / "root")
    wheel = build_wheel(work / "dist", wheelhouse)
    inventory = write_inventory(work / "inventory", root, wheel, {"edge_motors": MOTORS})
    first = run_playbook(inventory)
    second = run_playbook(inventory)
    return Target(root, inventory, first, second)


def test_first_run_converges(target: Target) -> None:
    assert target.first.failed == 0, target.first.output
    assert target.first.changed >= 10, target.first.output


def test_second_run_changes_nothing(target: Target) -> None:
    assert target.second.failed == 0, target.second.output
    assert target.second.changed == 0, target.second.output


def test_venv_holds_giftwheel_edge_and_the_pi5_gpio_library(target: Target) -> None:
    probe = (
        "import edge.daemon, thingsboard_gateway, gpiozero, lgpio; "
        "from importlib.metadata import version; print(version('giftwheel'))"
    )
    result = in_root(target.root, "/opt/giftwheel/venv/bin/python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0"
    assert (target.root / "opt/giftwheel/venv/bin/giftwheel").exists()


def test_the_gpio_library_installs_as_a_wheel_with_no_compiler_on_the_pi(target: Target) -> None:
    # The root, like Raspberry Pi OS Lite and the roles, has no C compiler: lgpio came in as a wheel.
    assert in_root(target.root, "sh", "-c", "command -v cc || command -v gcc").returncode != 0
    assert in_root(target.root, "/opt/giftwheel/venv/bin/python", "-c", "import lgpio").returncode == 0
    # And on the Pis themselves: the pinned lgpio, binaries only, for 64- and 32-bit Pi OS.
    wheels = ensure_pi_wheels()
    for machine in PI_MACHINES:
        (wheel,) = (wheels / machine).glob("lgpio-*.whl")
        assert wheel.name.endswith(f"_{machine}.whl"), wheel.name
        assert "-cp311-" in wheel.name, wheel.name


def test_config_is_rendered_per_host_and_loads_in_the_daemon(target: Target) -> None:
    config_path = target.root / "etc/giftwheel/edge.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["motors"] == MOTORS
    assert config["gpio_backend"] == "lgpio"  # chosen from the board: lgpio times the STEP pulses
    assert config["thingsboard"] == {
        "host": "tb.test.invalid",
        "port": 1883,
        "access_token_file": "/etc/giftwheel/gateway.token",
    }
    assert config["state_dir"] == "/var/lib/giftwheel-edge"
    # The daemon's own loader accepts it (the role also validates before putting it in place).
    load = (
        "import json; from pathlib import Path; from edge.settings import load_settings; "
        "s = load_settings(Path('/etc/giftwheel/edge.yaml')); "
        "print(json.dumps({'token': s.thingsboard.token(), 'motors': [m.name for m in s.motors]}))"
    )
    result = in_root(target.root, "/opt/giftwheel/venv/bin/python", "-c", load)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "token": "gw-token-from-the-vault",
        "motors": ["motor_07", "motor_08"],
    }


def test_secrets_are_readable_by_the_service_user_only(target: Target) -> None:
    group = {
        line.split(":")[0]: line.split(":") for line in (target.root / "etc/group").read_text().splitlines()
    }
    service_gid = int(group["giftwheel-edge"][2])
    for name in ("gateway.token", "edge.yaml"):
        st = (target.root / "etc/giftwheel" / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, service_gid, 0o640), name
    assert "giftwheel-edge" in group["gpio"][3].split(",")


def test_unit_is_installed_enabled_and_verifies_against_the_real_binary(target: Target) -> None:
    unit = target.root / "etc/systemd/system/giftwheel-edge.service"
    assert unit.read_text() == (REPO / "systemd/giftwheel-edge.service").read_text()
    assert (target.root / "etc/systemd/system/multi-user.target.wants/giftwheel-edge.service").is_symlink()
    assert (target.root / "etc/systemd/system/multi-user.target.wants/redis-server.service").exists()
    result = verify(target.root, ["giftwheel-edge.service"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_local_redis_keeps_an_fsynced_append_only_file(target: Target) -> None:
    lines = (target.root / "etc/redis/redis.conf").read_text().splitlines()
    active = [line for line in lines if line and not line.startswith("#")]
    assert "appendonly yes" in active
    assert "appendonly no" not in active
    assert [line for line in active if line.startswith("appendfsync")] == ["appendfsync always"]


def test_a_bad_motor_config_fails_the_canary_keeps_its_config_and_stops_the_rollout(
    target: Target, tmp_path: Path
) -> None:
    # One playbook run checks both (each run costs seconds of CI): the bad config fails its host and
    # leaves the running config in place, and serial [1, "25%"] + max_fail_percentage 0 make the first
    # host a batch of its own, so when it fails the other hosts are never touched (here they could
    # not be: their roots do not exist).
    before = (target.root / "etc/giftwheel/edge.yaml").read_text()
    inventory = tmp_path / "inventory"
    shutil.copytree(target.inventory, inventory)
    others = {name: {"ansible_host": str(tmp_path / name), "ansible_connection": "community.general.chroot"}
              for name in ("pi-later-1", "pi-later-2", "pi-later-3")}  # fmt: skip
    hosts = {"all": {"children": {"edge": {"hosts": {HOST: {"ansible_host": str(target.root)}, **others}}}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    clash = [MOTORS[0], {**MOTORS[1], "pins": {"coils": [5, 6, 13, 17]}}]  # pin 17 is motor_07's STEP
    update_host_vars(inventory, edge_motors=clash)
    bad = run_playbook(inventory)
    assert bad.failed == 1, bad.output
    assert "pin 17 is already used" in bad.output
    assert (target.root / "etc/giftwheel/edge.yaml").read_text() == before
    assert HOST in bad.output
    assert "pi-later" not in bad.output.split("PLAY RECAP")[1]
    assert "pi-later" not in bad.output


def test_only_a_real_change_notifies_the_restart(target: Target) -> None:
    # Unchanged run: no handler at all. Changed wiring: the config task and the restart handler
    # (skipped here because nothing runs in a chroot; on a Pi it restarts the daemon once).
    assert "RUNNING HANDLER" not in target.second.output
    faster = [{**MOTORS[0], "max_step_rate_sps": 2400}, MOTORS[1]]
    update_host_vars(target.inventory, edge_motors=faster)
    changed = run_playbook(target.inventory)
    assert (changed.failed, changed.changed) == (0, 1), changed.output
    assert (
        "changed: [pi-test]"
        in changed.output.split("TASK [edge : Render the edge config")[1].split("TASK")[0]
    )
    assert "RUNNING HANDLER [edge : Restart giftwheel-edge]" in changed.output
    assert "Reinstall giftwheel" not in changed.output
    config = yaml.safe_load((target.root / "etc/giftwheel/edge.yaml").read_text())
    assert config["motors"][0]["max_step_rate_sps"] == 2400


API_KEY = "ops-test-api-key-0123456789"
wait_until = partial(waiting.wait_until, timeout_s=30.0, interval_s=0.2)  # a booted root answers slowly
RULES = {"version": 1, "default_device": "motor_07", "multiplier": 1, "command_rounds_max": 100}


def add_cloud_units(root: Path, env: dict[str, str], api_port: int) -> None:
    """What a cloud host gets (docs/deploy.md): giftwheel[cloud] in the venv, cloud.env, the units
    from systemd/ enabled, and a drop-in moving the API to a free port (the host's network is shared)."""
    (wheel,) = (root / "opt/giftwheel/dist").glob("giftwheel-*.whl")
    requirement = f"giftwheel[cloud] @ file:///opt/giftwheel/dist/{wheel.name}"
    offline = ["--no-index", "--find-links", "/opt/giftwheel/wheelhouse"]
    pip = in_root(root, "/opt/giftwheel/venv/bin/pip", "install", "-q", *offline, requirement)
    assert pip.returncode == 0, pip.stderr
    etc = root / "etc/giftwheel"
    (etc / "rules.yaml").write_text(yaml.safe_dump(RULES))
    (etc / "cloud.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (etc / "cloud.env").chmod(0o600)
    units = root / "etc/systemd/system"
    for unit in ("giftwheel-api.service", "giftwheel-worker@.service"):
        shutil.copy(REPO / "systemd" / unit, units / unit)
    wants = units / "multi-user.target.wants"
    (wants / "giftwheel-api.service").symlink_to("/etc/systemd/system/giftwheel-api.service")
    (wants / "giftwheel-worker@1.service").symlink_to("/etc/systemd/system/giftwheel-worker@.service")
    dropin = units / "giftwheel-api.service.d"
    dropin.mkdir()
    (dropin / "port.conf").write_text(
        "[Service]\nExecStart=\n"
        f"ExecStart=/opt/giftwheel/venv/bin/giftwheel api --host 127.0.0.1 --port {api_port} --workers 1\n"
    )


def wait_active(booted: BootedRoot, unit: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline and state != "active":
        state = booted.run("systemctl", "is-active", unit).stdout.strip()
        time.sleep(0.3)
    if state != "active":
        status = booted.run("systemctl", "status", "--no-pager", unit).stdout
        raise AssertionError(status + booted.run("journalctl", "--no-pager", "-u", unit).stdout[-4000:])


def commands_done(emulator: EmulatorProcess, motor: str) -> int:
    reply = emulator.send_rpc(motor, "status", {}, timeout_ms=5000)[1]
    return int(reply.get("commandsDone", -1))


def test_booted_under_systemd_a_gift_goes_through_all_three_units(target: Target, tmp_path: Path) -> None:
    """The provisioned root booted with systemd as PID 1 (systemd-nspawn), with the cloud units added:
    every unit runs with its full hardening; the edge unit becomes active only through the daemon's
    READY=1; an RPC through the ThingsBoard emulator turns a motor; and a gift POSTed to the API unit
    is dispatched by the worker unit to that motor. Simulation mode: there is no GPIO here."""
    redis_port, api_port = free_port(), free_port()
    devices: list[dict[str, object]] = [
        {"name": HOST, "token": "gw-token-from-the-vault", "type": "gateway", "gateway": True},
        {"name": "dispatcher", "token": "dispatcher-ops-token", "type": "dispatcher"},
    ]
    with EmulatorProcess(devices) as emulator:
        update_host_vars(
            target.inventory,
            edge_motors=MOTORS,
            edge_simulation=True,
            edge_thingsboard_host="127.0.0.1",
            edge_thingsboard_port=emulator.mqtt_port,
            edge_redis_url=f"redis://127.0.0.1:{redis_port}/0",
            redis_settings={"appendonly": "yes", "appendfsync": "always", "port": str(redis_port)},
            edge_config_extra={"simulation": {"time_scale": 20}},
        )
        recap = run_playbook(target.inventory)
        assert recap.failed == 0, recap.output
        cloud_env = {
            "GIFTWHEEL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",  # the same Redis, its own db
            "GIFTWHEEL_API_KEYS": API_KEY,
            "GIFTWHEEL_FEEDBACK__SECRET": "ops-test-feedback-secret-0123456789",
            "GIFTWHEEL_WORKER__RULES_FILE": "/etc/giftwheel/rules.yaml",
            "GIFTWHEEL_WORKER__MQTT__HOST": "127.0.0.1",
            "GIFTWHEEL_WORKER__MQTT__PORT": str(emulator.mqtt_port),
            "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN": "dispatcher-ops-token",
        }
        add_cloud_units(target.root, cloud_env, api_port)
        try:
            booted = BootedRoot(target.root, tmp_path / "nspawn.log").start()
        except BootError as exc:
            pytest.skip(f"systemd-nspawn cannot boot a container on this machine: {exc}")
        with booted:
            for unit in ("giftwheel-edge", "giftwheel-api", "giftwheel-worker@1"):
                wait_active(booted, unit)
            status = booted.run("systemctl", "status", "--no-pager", "giftwheel-edge").stdout
            assert "connected to ThingsBoard" in status  # the daemon's STATUS= from sd_notify
            # The gateway announces its motors after connecting; the worker connects as the dispatcher.
            wait_until(lambda: emulator.is_connected("motor_07"), what="motor_07 announced")
            wait_until(lambda: emulator.is_connected("dispatcher"), what="worker connected as dispatcher")

            code, reply = emulator.send_rpc("motor_07", "rotate", {"commandId": "c-0b007001", "rounds": 2},
                                            timeout_ms=10_000)  # fmt: skip
            assert (code, reply.get("accepted")) == (200, True), reply
            wait_until(lambda: commands_done(emulator, "motor_07") == 1, what="the RPC's command done")

            gift = {
                "eventId": "ops:booted:1",
                "event": "gift",
                "platform": "tiktok",
                "userId": "viewer_1",
                "giftName": "Rose",
                "diamond": 1,
                "quantity": 3,
                "timestamp": int(time.time() * 1000),
            }
            headers = {"Authorization": f"Bearer {API_KEY}"}
            answer = httpx.post(
                f"http://127.0.0.1:{api_port}/v1/events", json=gift, headers=headers, timeout=10
            )
            assert answer.status_code == 202, answer.text
            wait_until(lambda: commands_done(emulator, "motor_07") == 2, what="the gift's command done")

            show = booted.run("systemctl", "show", "giftwheel-edge", "-p", "NRestarts", "-p", "User").stdout
            assert "NRestarts=0" in show
            assert "User=giftwheel-edge" in show
            for unit in ("giftwheel-api", "giftwheel-worker@1"):
                show = booted.run("systemctl", "show", unit, "-p", "NRestarts", "-p", "DynamicUser").stdout
                assert "NRestarts=0" in show
                assert "DynamicUser=yes" in show
            check_health_under_systemd(booted, redis_port)


def edge_status(booted: BootedRoot) -> str:
    return booted.run("systemctl", "status", "--no-pager", "giftwheel-edge").stdout


def check_health_under_systemd(booted: BootedRoot, redis_port: int) -> None:
    """Health that tells the truth, as systemd itself reports it."""
    # The local Redis goes away: the status says so at once (it said "connected" before).
    booted.run("systemctl", "stop", "redis-server")
    lost = f"local Redis redis://127.0.0.1:{redis_port}/0 unreachable: the motors can take no command"
    wait_until(lambda: lost in edge_status(booted), what="status shows the lost Redis")
    booted.run("systemctl", "start", "redis-server")
    wait_until(lambda: "connected to ThingsBoard" in edge_status(booted), what="status back to connected")
    # A config error exits 2 with one line, and systemd does not restart it (RestartPreventExitStatus).
    config = booted.root / "etc/giftwheel/edge.yaml"
    good = config.read_text()
    config.write_text(good + "log_level: DEBUG\nlog_level: INFO\n")
    try:
        booted.run("systemctl", "restart", "giftwheel-edge", timeout_s=60)
        wait_until(
            lambda: "ActiveState=failed" in booted.run("systemctl", "show", "giftwheel-edge").stdout,
            what="the edge unit failed on its config",
        )
        time.sleep(6)  # RestartSec=5: a restart would have begun by now
        show = booted.run("systemctl", "show", "giftwheel-edge").stdout
        props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
        assert (props["NRestarts"], props["ExecMainStatus"], props["ActiveState"]) == ("0", "2", "failed")
        journal = booted.run("journalctl", "--no-pager", "-u", "giftwheel-edge", "-o", "cat").stdout
        assert "duplicate key 'log_level'" in journal
        assert "Traceback" not in journal
    finally:
        config.write_text(good)
