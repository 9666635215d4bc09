"""deploy/compose.yaml: the services are there, and every GIFTWHEEL_* variable it sets is a real cloud
setting that validates (CloudSettings refuses an unknown one, so a typo would stop the service)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from cloud.settings import CloudSettings
from cloud.settings_env import setting_names
from tests.ops.target_root import REPO

DEPLOY = REPO / "deploy"
_VAR = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def example_env() -> dict[str, str]:
    lines = (DEPLOY / "compose.env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {k: v or "filled-in-by-the-operator" for k, v in pairs}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough for this file."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) if ":-" in m.group(0) else ""), value)
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    result: dict[str, Any] = interpolate(compose["services"], example_env())
    return result


def setting_exists(key: str) -> bool:
    return key.upper() in setting_names(CloudSettings)


def test_the_stack_is_complete(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "postgres", "thingsboard", "api", "worker"}
    assert services["thingsboard"]["image"].startswith("thingsboard/tb-node:")
    assert "--appendonly" in services["redis"]["command"]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["command"][0] == "api"


@pytest.mark.parametrize("service", ["api", "worker"])
def test_cloud_settings_in_compose_are_real_and_valid(
    services: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: str(v) for k, v in services[service]["environment"].items()}
    unknown = [k for k in env if k.startswith("GIFTWHEEL_") and not setting_exists(k)]
    assert unknown == []
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = CloudSettings()
    assert settings.redis_url == "redis://redis:6379/0"
    if service == "api":
        assert settings.ingest_auth_problem() is None  # `giftwheel api` would refuse to start otherwise
    if service == "worker":
        assert settings.worker.mqtt.host == "thingsboard"
        assert settings.worker.rules_file is not None
        # Replicas share one environment: a pool each claims from, never one token for all of them.
        assert settings.worker.mqtt.access_tokens
        assert not settings.worker.mqtt.access_token.get_secret_value()


def test_every_worker_replica_can_have_its_own_dispatcher_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's replica count and a pool of that many tokens: each replica gets one."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env = example_env()
    replicas = int(interpolate(compose["services"]["worker"]["deploy"]["replicas"], env))
    assert replicas >= 2
    tokens = [f"token-{n}" for n in range(replicas)]
    worker = interpolate(
        compose["services"]["worker"]["environment"], {**env, "GIFTWHEEL_DISPATCHER_TOKENS": ",".join(tokens)}
    )
    for key, value in worker.items():
        monkeypatch.setenv(key, str(value))
    assert CloudSettings().worker.mqtt.tokens() == tokens


def test_worker_rules_file_default_exists(services: dict[str, Any]) -> None:
    (mount,) = services["worker"]["volumes"]
    host_path = mount.split(":")[0]
    assert (DEPLOY / host_path).resolve().is_file()


def test_setting_lookup_catches_a_typo() -> None:
    assert setting_exists("GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN")
    assert not setting_exists("GIFTWHEEL_WORKER__MQTT__ACCESS_TOKN")
