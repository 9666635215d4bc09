"""Uploaded rules (RulesStore, in a real Redis) outrank a worker's rules file on its rules poll, and
the file is back once the upload is removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cloud.worker.rules import RulesError
from cloud.worker.rules_source import RulesSource
from cloud.worker.rules_store import RULES_DOC_KEY, RULES_SOURCE, RulesStore
from tests.waiting import wait_until
from tests.worker.conftest import gift


async def test_an_upload_outranks_the_file_until_it_is_removed(tmp_path: Path, redis: Redis) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("default_device: from_file\n")
    source = RulesSource(path)
    store = RulesStore(redis)
    watcher = asyncio.create_task(source.watch(0.02, store=store))
    try:
        _, version = await store.upload("default_device: uploaded\n", "ops", 1)
        await wait_until(lambda: source.current.route(gift()).device == "uploaded")
        assert (source.current.source, source.document_version, version) == (RULES_SOURCE, 1, 1)

        with pytest.raises(RulesError, match="not valid YAML"):
            await store.upload("default_device: [broken\n", "ops", 2)
        assert (await store.version(), source.current.route(gift()).device) == (1, "uploaded")

        source.reload()  # a SIGHUP or a file change: the upload still outranks the file
        assert source.current.route(gift()).device == "uploaded"

        await redis.delete(RULES_DOC_KEY)
        await wait_until(lambda: source.current.route(gift()).device == "from_file")
        assert source.document_version is None
    finally:
        watcher.cancel()
