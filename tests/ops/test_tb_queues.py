"""`giftwheel tb queues` against the emulator's ThingsBoard REST side (real HTTP), on a ThingsBoard with
only a fresh install's queues: as the system administrator it creates the shipped queues, changes
nothing on a second run, puts back a drifted setting and only that; a tenant administrator is refused;
then `giftwheel tb provision` succeeds and the profiles carry the queues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.tb_emulator.harness import SHIPPED_QUEUES, EmulatorProcess
from devstack.tb_emulator.rest_admin import SYSADMIN_PASSWORD, SYSADMIN_USER, TENANT_PASSWORD, TENANT_USER
from giftwheel.cli import main
from tests.ops.test_tb_provision import admin, provision
from tests.ops.test_tb_provision_queues import fleet_file

pytestmark = pytest.mark.slow

QUEUES_DIR = SHIPPED_QUEUES[0].parent
SHIPPED = {q["name"]: q for q in (json.loads(path.read_text()) for path in SHIPPED_QUEUES)}


def tb_queues(
    emulator: EmulatorProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    user: str = SYSADMIN_USER,
    password: str = SYSADMIN_PASSWORD,
) -> tuple[int, list[str]]:
    monkeypatch.setenv("GIFTWHEEL_TB_SYSADMIN_PASSWORD", password)
    code = main(["tb", "queues", "--url", emulator.base_url, "--user", user, "--queues", str(QUEUES_DIR)])
    out, err = capsys.readouterr()
    assert out == ""
    return code, [line.strip() for line in err.splitlines()]


def server_queues(emulator: EmulatorProcess) -> dict[str, dict[str, Any]]:
    with admin(emulator) as tb:  # a tenant administrator may read the system's queues
        page = tb.get("/api/queues", params={"serviceType": "TB_RULE_ENGINE", "pageSize": 100, "page": 0})
    assert page.status_code == 200
    return {q["name"]: q for q in page.json()["data"]}


def test_queues_created_then_unchanged_then_provision_names_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess([], queues=()) as emulator:  # a fresh ThingsBoard's three queues only
        code, log = tb_queues(emulator, capsys, monkeypatch)
        assert code == 0, log
        assert log == [
            "created  rule-engine queue GiftwheelDispatch",
            "created  rule-engine queue GiftwheelFeedback",
        ]
        on_server = server_queues(emulator)
        assert set(on_server) == {"Main", "HighPriority", "SequentialByOriginator", *SHIPPED}
        for name, shipped in SHIPPED.items():
            assert {k: on_server[name][k] for k in shipped} == shipped
        code, log = tb_queues(emulator, capsys, monkeypatch)
        assert code == 0, log
        assert log == [
            "unchanged  rule-engine queue GiftwheelDispatch",
            "unchanged  rule-engine queue GiftwheelFeedback",
        ]
        assert server_queues(emulator) == on_server  # same ids, same createdTime: nothing was saved
        code, _, err = provision(emulator, fleet_file(tmp_path), capsys, monkeypatch)
        assert code == 0, err
        with admin(emulator) as tb:
            profiles = tb.get("/api/deviceProfiles", params={"pageSize": 100, "page": 0}).json()["data"]
        stats = {q["name"]: q for q in emulator.stats()["ruleEngineQueues"]}
    assert {p["name"]: p["defaultQueueName"] for p in profiles} == {
        "dispatcher": "GiftwheelDispatch",
        "gateway": None,
        "motor": "GiftwheelFeedback",
    }
    assert {"GiftwheelDispatch", "GiftwheelFeedback"} <= set(stats)  # the rule engine runs them


def test_a_drifted_setting_is_put_back_and_nothing_else(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess([], queues=()) as emulator:
        assert tb_queues(emulator, capsys, monkeypatch)[0] == 0
        before = server_queues(emulator)["GiftwheelFeedback"]
        drifted = {
            **before,
            "pollInterval": 25,
            "processingStrategy": {**before["processingStrategy"], "retries": 1},
            "additionalInfo": {**before["additionalInfo"], "note": "set by hand"},
        }
        with admin(emulator, SYSADMIN_USER, SYSADMIN_PASSWORD) as tb:
            assert (
                tb.post("/api/queues", params={"serviceType": "TB_RULE_ENGINE"}, json=drifted).status_code
                == 200
            )
        code, log = tb_queues(emulator, capsys, monkeypatch)
        assert code == 0, log
        assert log == [
            "unchanged  rule-engine queue GiftwheelDispatch",
            "updated  rule-engine queue GiftwheelFeedback",
        ]
        after = server_queues(emulator)["GiftwheelFeedback"]
        running = {q["name"] for q in emulator.stats()["ruleEngineQueues"]}
    assert after["id"] == before["id"]  # updated in place, not created again
    assert (after["pollInterval"], after["processingStrategy"]) == (
        5,
        SHIPPED["GiftwheelFeedback"]["processingStrategy"],
    )
    assert after["additionalInfo"]["note"] == "set by hand"  # a key we do not ship is left alone
    assert "GiftwheelFeedback" in running


def test_a_queue_of_our_name_on_another_topic_keeps_it_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other_topic = {**SHIPPED["GiftwheelDispatch"], "topic": "tb_rule_engine.made_by_hand"}
    with EmulatorProcess([], queues=()) as emulator:
        with admin(emulator, SYSADMIN_USER, SYSADMIN_PASSWORD) as tb:
            assert (
                tb.post("/api/queues", params={"serviceType": "TB_RULE_ENGINE"}, json=other_topic).status_code
                == 200
            )
        code, log = tb_queues(emulator, capsys, monkeypatch)
        assert code == 0, log
        topic = server_queues(emulator)["GiftwheelDispatch"]["topic"]
    assert "unchanged  rule-engine queue GiftwheelDispatch" in log
    assert topic == "tb_rule_engine.made_by_hand"
    assert any("keeps its topic 'tb_rule_engine.made_by_hand'" in line for line in log)


def test_a_tenant_administrator_is_refused_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmulatorProcess([], queues=()) as emulator:
        code, log = tb_queues(emulator, capsys, monkeypatch, TENANT_USER, TENANT_PASSWORD)
        names = set(server_queues(emulator))
    assert code == 2
    assert "You don't have permission to perform this operation! (HTTP 403)" in log[0]
    assert "only ThingsBoard's system administrator may" in log[1]
    assert names == {"Main", "HighPriority", "SequentialByOriginator"}  # nothing was created


def test_a_missing_password_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GIFTWHEEL_TB_SYSADMIN_PASSWORD", raising=False)
    code = main(["tb", "queues", "--url", "http://127.0.0.1:1", "--user", SYSADMIN_USER])
    assert code == 2
    assert "set GIFTWHEEL_TB_SYSADMIN_PASSWORD" in capsys.readouterr().err
