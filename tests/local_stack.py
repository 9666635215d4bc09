"""One whole local stack (devstack.stack.LocalStack: real processes) per test module, and a client of
its cloud Redis per test. A module imports ``stack``, ``cloud`` and ``stack_options`` from here, or
defines its own ``stack_options`` where it needs other options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from devstack.stack import LocalStack, StackOptions


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    return StackOptions(workers=1)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stack_options: StackOptions
) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with LocalStack(workdir, stack_options) as running:
        yield running


@pytest.fixture
async def cloud(stack: LocalStack) -> AsyncIterator[Redis]:
    redis = Redis.from_url(stack.cloud_redis.url, decode_responses=True)
    yield redis
    await redis.aclose()
