"""`giftwheel tb provision` and the rule-engine queues the shipped profiles name: ThingsBoard refuses a
device profile whose defaultQueueName is not a queue (DeviceProfileDataValidator), so the queues in
deploy/thingsboard/queues must exist first (a sysadmin creates them); with them, the profiles carry them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from devstack.tb_emulator.harness import SHIPPED_QUEUES, EmulatorProcess
from tests.ops.test_tb_provision import FLEET, admin, provision

pytestmark = pytest.mark.slow


def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(FLEET))
    return path


def test_profiles_naming_queues_nobody_created_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess([], queues=()) as emulator:  # a fresh ThingsBoard's queues only
        code, _, err = provision(emulator, fleet_file(tmp_path), capsys, monkeypatch)
    assert code == 1
    assert any("Device profile is referencing to non-existent queue! (HTTP 400)" in line for line in err)


def test_provisioned_profiles_carry_their_queues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess([], queues=SHIPPED_QUEUES) as emulator:  # the queues a sysadmin added
        code, _, _ = provision(emulator, fleet_file(tmp_path), capsys, monkeypatch)
        with admin(emulator) as client:
            page = client.get("/api/deviceProfiles", params={"pageSize": 100, "page": 0}).json()
    assert code == 0
    named = {p["name"]: p["defaultQueueName"] for p in page["data"]}
    assert named == {"dispatcher": "GiftwheelDispatch", "gateway": None, "motor": "GiftwheelFeedback"}
