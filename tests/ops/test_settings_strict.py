"""Settings cannot silently lie: a GIFTWHEEL_* variable that names no setting stops the process, and
the error names the variable and the setting it was probably meant to be."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydantic import ValidationError

from cloud.settings import CloudSettings
from cloud.sources.settings import SourceSettings
from devstack.processes import giftwheel_argv

TYPO = "GIFTWHEEL_INGEST__STREAM_SHRADS"


def clean_environ() -> dict[str, str]:
    """This process's environment without any GIFTWHEEL_ variable (a child must get only its own)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("GIFTWHEEL_")}


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giftwheel_argv(*args),
        env={**clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["api"], ["worker"]])
def test_a_misspelt_shard_count_stops_the_api_and_the_worker(command: list[str]) -> None:
    # Before: taken in silence; the API kept one shard while workers set to 8 read other streams.
    result = _run(*command, env={"GIFTWHEEL_MODE": "development", TYPO: "8"})
    assert result.returncode == 2, result.stderr
    assert f"{TYPO}: not a setting (did you mean GIFTWHEEL_INGEST__STREAM_SHARDS" in result.stderr


def test_a_misspelt_source_variable_stops_the_source() -> None:
    result = _run("source", "jsonl", "-", env={"GIFTWHEEL_STREAKS__TIMEOUT": "1"})
    assert result.returncode == 2, result.stderr
    assert "GIFTWHEEL_STREAKS__TIMEOUT: not a setting (did you mean GIFTWHEEL_STREAKS__TIMEOUT_S" in (
        result.stderr
    )


def test_unknown_variables_at_every_depth_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GIFTWHEEL_REDIS_ULR", "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKN", "giftwheel_realtime__nope"):
        monkeypatch.setenv(name, "x")
        with pytest.raises(ValidationError, match=f"{name}: not a setting"):
            CloudSettings()
        monkeypatch.delenv(name)
    assert CloudSettings().redis_url  # and nothing else was in the way


def test_a_setting_given_as_a_whole_section_or_in_lower_case_is_still_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIFTWHEEL_INGEST", '{"stream_shards": 4}')
    monkeypatch.setenv("giftwheel_worker__mqtt__port", "1884")
    settings = CloudSettings()
    assert settings.ingest.stream_shards == 4
    assert settings.worker.mqtt.port == 1884


def test_sections_refuse_unknown_keys_given_directly() -> None:
    with pytest.raises(ValidationError, match=r"ingest\.stream_shrads"):
        CloudSettings(ingest={"stream_shrads": 8})
    with pytest.raises(ValidationError, match=r"tiktok\.budget\.per_mnute"):
        SourceSettings(tiktok={"budget": {"per_mnute": 1}})


def test_api_and_source_variables_are_kept_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """They share the GIFTWHEEL_ prefix, not their settings: each process gets its own environment."""
    monkeypatch.setenv("GIFTWHEEL_API_URL", "http://127.0.0.1:8000")
    with pytest.raises(ValidationError, match="GIFTWHEEL_API_URL: not a setting"):
        CloudSettings()
    assert SourceSettings().api_url == "http://127.0.0.1:8000"


def test_the_error_never_echoes_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "a-long-api-key-nobody-may-read"
    monkeypatch.setenv("GIFTWHEEL_API_KEYS", secret)
    monkeypatch.setenv(TYPO, "8")
    with pytest.raises(ValidationError) as caught:
        CloudSettings()
    assert secret not in str(caught.value)
