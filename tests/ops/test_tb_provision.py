"""`giftwheel tb provision` against the emulator's ThingsBoard REST side (real HTTP): creates what is
missing, changes nothing on a second run, repairs drift, and its printed tokens work on MQTT."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cloud.mqtt.codec import MQTT_3_1_1
from cloud.tbadmin.fleet import FleetError, load_fleet
from devstack.tb_emulator.harness import EmulatorProcess
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rest_admin import TENANT_PASSWORD, TENANT_USER
from devstack.tb_emulator.versions import DEFAULT_TB_VERSION, TbVersion
from giftwheel.cli import main
from tests.ops.target_root import REPO

pytestmark = pytest.mark.slow

FEEDBACK_URL = "https://api.test.invalid/v1/feedback/thingsboard"
FEEDBACK_SECRET = "feedback-secret-for-the-test-0123456789"
FLEET = {"dispatchers": {"count": 2}, "gateways": {"pi-01": ["motor_01", "motor_02"], "pi-02": ["motor_03"]}}


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorProcess]:
    """A fresh ThingsBoard (no devices, no profiles) of the version a test asks for, else the default."""
    version: TbVersion = getattr(request, "param", DEFAULT_TB_VERSION)
    with EmulatorProcess([], extra_args=("--thingsboard-version", version.value)) as emu:
        yield emu


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(FLEET))
    return path


def provision(
    emulator: EmulatorProcess,
    fleet: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
) -> tuple[int, dict[str, Any], list[str]]:
    monkeypatch.setenv("GIFTWHEEL_TB_PASSWORD", TENANT_PASSWORD)
    monkeypatch.setenv("GIFTWHEEL_FEEDBACK__SECRET", FEEDBACK_SECRET)
    code = main(
        ["tb", "provision", "--url", emulator.base_url, "--user", TENANT_USER, "--fleet", str(fleet),
         "--feedback-url", FEEDBACK_URL, "--artefacts", str(REPO / "deploy/thingsboard"), *extra]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, (yaml.safe_load(out) if code == 0 else {}), err.splitlines()


@contextmanager
def admin(
    emulator: EmulatorProcess, user: str = TENANT_USER, password: str = TENANT_PASSWORD
) -> Iterator[httpx.Client]:
    """An HTTP client logged in to the emulator's ThingsBoard REST API (the tenant administrator unless
    told otherwise)."""
    with httpx.Client(base_url=emulator.base_url, timeout=10) as client:
        login = client.post("/api/auth/login", json={"username": user, "password": password})
        client.headers["X-Authorization"] = "Bearer " + login.json()["token"]
        yield client


# Both versions: 4.4 upgrades the REST API call node on every save (3 -> 4), which a comparison of the
# stored chain with the shipped one would take for a change on every run (cloud/tbadmin/chain_sync.py)
@pytest.mark.parametrize("emulator", list(TbVersion), indirect=True, ids=lambda v: f"tb{v.value}")
def test_provision_creates_everything_then_changes_nothing(
    emulator: EmulatorProcess,
    fleet_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, tokens, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert code == 0, log
    assert sorted(line.split()[0] for line in log) == ["created"] * (1 + 3 + 2 + 2 + 3)
    assert set(tokens["vault_edge_gateway_tokens"]) == {"pi-01", "pi-02"}
    assert len(set(tokens["vault_edge_gateway_tokens"].values())) == 2
    dispatchers = tokens["giftwheel_dispatcher_tokens"]
    assert list(dispatchers) == ["dispatcher-1", "dispatcher-2"]
    assert len(set(dispatchers.values())) == 2  # one token per worker instance
    assert tokens["giftwheel_dispatcher_token_pool"] == ",".join(dispatchers.values())

    code, again, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert code == 0, log
    assert {line.split()[0] for line in log} == {"unchanged"}
    assert again == tokens  # existing devices keep their tokens

    with admin(emulator) as tb:
        devices = {d["name"]: d for d in emulator.devices()}
        assert devices["pi-01"]["gateway"] is True
        assert devices["motor_03"]["type"] == "motor"
        assert devices["dispatcher-1"]["type"] == devices["dispatcher-2"]["type"] == "dispatcher"
        (chain,) = tb.get("/api/ruleChains", params={"pageSize": 10, "page": 0}).json()["data"]
        profiles = tb.get("/api/deviceProfiles", params={"pageSize": 10, "page": 0}).json()["data"]
        assert {p["name"]: p["defaultRuleChainId"]["id"] for p in profiles} == {
            name: chain["id"]["id"] for name in ("dispatcher", "gateway", "motor")
        }
        metadata = tb.get(f"/api/ruleChain/{chain['id']['id']}/metadata").json()
    shipped = yaml.safe_load((REPO / "deploy/thingsboard/giftwheel_rule_chain.json").read_text())
    assert [n["type"] for n in metadata["nodes"]] == [n["type"] for n in shipped["metadata"]["nodes"]]
    # loadRuleChainMetaData orders connections by (fromIndex, toIndex, type)
    by_index = operator.itemgetter("fromIndex", "toIndex", "type")
    assert metadata["connections"] == sorted(shipped["metadata"]["connections"], key=by_index)
    (rest,) = [n for n in metadata["nodes"] if n["type"].endswith("TbRestApiCallNode")]
    assert rest["configuration"]["restEndpointUrlPattern"] == FEEDBACK_URL
    assert rest["configuration"]["headers"]["X-Giftwheel-Secret"] == FEEDBACK_SECRET


async def connack(emulator: EmulatorProcess, token: str) -> int:
    client = RawMqttClient("127.0.0.1", emulator.mqtt_port, version=MQTT_3_1_1)
    try:
        return (await client.connect(token, client_id="provision-test")).reason_code
    finally:
        await client.close()


def test_printed_tokens_authenticate_on_mqtt(
    emulator: EmulatorProcess,
    fleet_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, tokens, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert code == 0, log
    printed = [*tokens["giftwheel_dispatcher_tokens"].values(), *tokens["vault_edge_gateway_tokens"].values()]
    for token in printed:
        assert asyncio.run(connack(emulator, token)) == 0
    assert asyncio.run(connack(emulator, "not-a-provisioned-token")) != 0


@pytest.mark.parametrize("emulator", list(TbVersion), indirect=True, ids=lambda v: f"tb{v.value}")
def test_drift_is_repaired_and_only_drift(
    emulator: EmulatorProcess,
    fleet_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert provision(emulator, fleet_file, capsys, monkeypatch)[0] == 0
    with admin(emulator) as tb:
        # Someone turns "Is gateway" off by hand and detaches the motor profile from the chain.
        gateway = tb.get("/api/tenant/devices", params={"deviceName": "pi-02"}).json()
        gateway["additionalInfo"]["gateway"] = False
        assert tb.post("/api/device", json=gateway).status_code == 200
        (motor,) = tb.get(
            "/api/deviceProfiles", params={"pageSize": 10, "page": 0, "textSearch": "motor"}
        ).json()["data"]
        assert tb.post("/api/deviceProfile", json={**motor, "defaultRuleChainId": None}).status_code == 200
        # ... and unwires the webhook in the rule chain editor.
        (chain,) = tb.get("/api/ruleChains", params={"pageSize": 10, "page": 0}).json()["data"]
        metadata = tb.get(f"/api/ruleChain/{chain['id']['id']}/metadata").json()
        metadata["connections"] = [c for c in metadata["connections"] if c["type"] != "motor"]
        assert tb.post("/api/ruleChain/metadata", json=metadata).status_code == 200
        stale = {**metadata, "version": metadata["version"] - 1}
        assert tb.post("/api/ruleChain/metadata", json=stale).status_code == 409  # the emulator locks too
    code, _, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert code == 0, log
    assert sorted(line.strip() for line in log if not line.strip().startswith("unchanged")) == [
        "updated  device profile motor",
        "updated  gateway device pi-02",
        "updated  rule chain giftwheel",
    ]
    assert {d["name"]: d["gateway"] for d in emulator.devices()}["pi-02"] is True
    with admin(emulator) as tb:
        repaired = tb.get(f"/api/ruleChain/{chain['id']['id']}/metadata").json()
    assert [n["id"] for n in repaired["nodes"]] == [n["id"] for n in metadata["nodes"]]  # updated in place
    assert any(c["type"] == "motor" for c in repaired["connections"])
    code, _, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert {line.split()[0] for line in log} == {"unchanged"}  # the repair holds


def test_more_dispatchers_on_request_and_the_existing_ones_keep_their_tokens(
    emulator: EmulatorProcess,
    fleet_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, first, log = provision(emulator, fleet_file, capsys, monkeypatch)
    assert code == 0, log
    code, more, log = provision(emulator, fleet_file, capsys, monkeypatch, "--dispatchers", "4")
    assert code == 0, log
    assert sorted(line.strip() for line in log if line.strip().startswith("created")) == [
        "created  dispatcher device dispatcher-3",
        "created  dispatcher device dispatcher-4",
    ]
    assert list(more["giftwheel_dispatcher_tokens"]) == [f"dispatcher-{n}" for n in (1, 2, 3, 4)]
    assert more["giftwheel_dispatcher_tokens"].items() >= first["giftwheel_dispatcher_tokens"].items()
    assert len(set(more["giftwheel_dispatcher_tokens"].values())) == 4
    types = {d["name"]: d["type"] for d in emulator.devices()}
    assert [types[f"dispatcher-{n}"] for n in (1, 2, 3, 4)] == ["dispatcher"] * 4


def test_an_existing_device_keeps_its_token_and_gets_its_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = [{"name": "pi-01", "token": "token-made-by-hand", "type": "default"}]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"gateways": {"pi-01": ["motor_01"]}}))
    with EmulatorProcess(seeded) as emulator:
        code, tokens, log = provision(emulator, fleet, capsys, monkeypatch)
        assert code == 0, log
        assert "  updated  gateway device pi-01" in log
        assert tokens["vault_edge_gateway_tokens"] == {"pi-01": "token-made-by-hand"}
        assert {d["name"]: (d["type"], d["gateway"]) for d in emulator.devices()}["pi-01"] == (
            "gateway",
            True,
        )


def test_wrong_password_is_a_clear_error(
    emulator: EmulatorProcess,
    fleet_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIFTWHEEL_TB_PASSWORD", "wrong")
    monkeypatch.setenv("GIFTWHEEL_FEEDBACK__SECRET", FEEDBACK_SECRET)
    code = main(
        ["tb", "provision", "--url", emulator.base_url, "--user", TENANT_USER, "--fleet", str(fleet_file),
         "--feedback-url", FEEDBACK_URL, "--artefacts", str(REPO / "deploy/thingsboard")]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Invalid username or password (HTTP 401)" in err
    assert emulator.devices() == []


def test_unreachable_thingsboard_is_a_clear_error(
    fleet_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIFTWHEEL_TB_PASSWORD", "x")
    monkeypatch.setenv("GIFTWHEEL_FEEDBACK__SECRET", "y")
    code = main(
        ["tb", "provision", "--url", "http://127.0.0.1:1", "--user", "u", "--fleet", str(fleet_file),
         "--feedback-url", FEEDBACK_URL, "--artefacts", str(REPO / "deploy/thingsboard"), "--timeout", "2"]
    )  # fmt: skip
    assert code == 1
    assert "POST /api/auth/login failed" in capsys.readouterr().err


def test_fleet_names_must_be_unique(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"gateways": {"pi-01": ["motor_01"], "pi-02": ["motor_01"]}}))
    with pytest.raises(FleetError, match="'motor_01' is both a motor of pi-01 and a motor of pi-02"):
        load_fleet(path)
    path.write_text(yaml.safe_dump({"dispatchers": {"count": 2}, "gateways": {"dispatcher-2": ["m1"]}}))
    with pytest.raises(FleetError, match="'dispatcher-2' is both a dispatcher and a gateway"):
        load_fleet(path)
    path.write_text(yaml.safe_dump({"dispatcher": "dispatcher", "gateways": {"pi-01": ["m1"]}}))
    with pytest.raises(FleetError, match="dispatcher: Extra inputs are not permitted"):
        load_fleet(path)  # the one-dispatcher fleet file of old: every worker needs its own now


def test_example_fleet_matches_the_production_inventory() -> None:
    fleet = load_fleet(REPO / "deploy/thingsboard/fleet.example.yaml")
    host_vars = REPO / "ansible/inventories/production/host_vars"
    inventory = {
        host.name: [m["name"] for m in yaml.safe_load((host / "vars.yml").read_text())["edge_motors"]]
        for host in sorted(host_vars.iterdir())
    }
    assert fleet.gateways == inventory
