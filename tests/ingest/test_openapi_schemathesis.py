"""Schemathesis against the served OpenAPI spec: no input the spec allows makes the API fail.

It runs against a real `giftwheel api` process (and a real Redis), so every generated request
goes through uvicorn, auth, validation and the Lua script. One check is left out: a
schema-valid event may still be refused, because the timestamp window depends on the clock and
the configured GiftBounds sit below the wire format's ceilings, which the static spec describes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from tests.ingest.conftest import API_KEY


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with (
        RedisServer() as redis,
        ApiProcess({"GIFTWHEEL_REDIS_URL": redis.url, "GIFTWHEEL_API_KEYS": API_KEY}) as api,
    ):
        yield api.url


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


def test_api_conforms_to_its_spec(api_schema: OpenApiSchema, api_url: str) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not load on pytest 9.
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    assert {op.path for op in operations} >= {"/v1/events", "/v1/events/batch", "/readyz"}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(
                base_url=api_url, headers=headers, excluded_checks=[positive_data_acceptance]
            )

        check()
