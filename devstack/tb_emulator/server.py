"""The emulator assembled: hub + rule chain + MQTT listener + HTTP side, started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from devstack.asgi_server import serve
from devstack.tb_emulator import http_api, nodes
from devstack.tb_emulator.device_api import handle_publish
from devstack.tb_emulator.devices import DevicesFile
from devstack.tb_emulator.hub import Hub, HubSettings
from devstack.tb_emulator.rule_engine import build_engine, load_chain_file
from devstack.tb_emulator.session import MqttSession

log = structlog.get_logger("tb_emulator")

REST_NODE = "org.thingsboard.rule.engine.rest.TbRestApiCallNode"
# The header the shipped chain carries the cloud webhook's shared secret in.
WEBHOOK_SECRET_HEADER = "X-Giftwheel-Secret"  # noqa: S105 (a header name, not a secret)
SHIPPED_CHAIN = Path(__file__).resolve().parents[2] / "deploy" / "thingsboard" / "giftwheel_rule_chain.json"


@dataclass(frozen=True)
class EmulatorSettings:
    host: str = "127.0.0.1"
    mqtt_port: int = 1883  # 0: any free port
    http_port: int = 8080  # 0: any free port
    hub: HubSettings = field(default_factory=HubSettings)
    # Override the REST API call node(s) of the chain (what a user edits after importing it).
    webhook_url: str | None = None
    webhook_secret: str | None = None


def apply_webhook_overrides(chain: dict[str, Any], url: str | None, secret: str | None) -> dict[str, Any]:
    """A copy of the chain whose REST API call nodes post to ``url`` with ``secret`` in the secret header."""
    if url is None and secret is None:
        return chain
    chain = copy.deepcopy(chain)
    for node in chain["metadata"]["nodes"]:
        if node.get("type") != REST_NODE:
            continue
        config = node.setdefault("configuration", {})
        if url is not None:
            config["restEndpointUrlPattern"] = url
        if secret is not None:
            config.setdefault("headers", {})[WEBHOOK_SECRET_HEADER] = secret
    return chain


class Emulator:
    """Run it in an event loop: ``await emulator.start()`` ... ``await emulator.stop()``."""

    def __init__(
        self, settings: EmulatorSettings, fleet: DevicesFile, chains: Sequence[dict[str, Any]]
    ) -> None:
        self.settings = settings
        self.hub = Hub(settings.hub, fleet)
        engines = []
        for chain in chains:
            chain = apply_webhook_overrides(chain, settings.webhook_url, settings.webhook_secret)
            # ChainError here (unknown node type, bad config) stops the emulator before it listens
            engines.append(build_engine(chain, nodes.bind(self.hub, settings.hub.thingsboard_version)))
        self.hub.set_chains(engines)
        self._mqtt: asyncio.Server | None = None
        self._http = contextlib.AsyncExitStack()
        self._sweeper: asyncio.Task[None] | None = None
        self.mqtt_port = settings.mqtt_port
        self.http_port = settings.http_port

    @classmethod
    def from_files(
        cls, settings: EmulatorSettings, fleet: DevicesFile, chain_paths: Sequence[Path]
    ) -> Emulator:
        return cls(settings, fleet, [load_chain_file(path) for path in chain_paths])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._mqtt = await loop.create_server(
            lambda: MqttSession(self.hub, partial(handle_publish, self.hub)),
            self.settings.host,
            self.settings.mqtt_port,
            reuse_address=True,
            backlog=1024,
        )
        self.mqtt_port = self._mqtt.sockets[0].getsockname()[1]
        app = http_api.app(self.hub)
        url = await self._http.enter_async_context(
            serve(app, host=self.settings.host, port=self.settings.http_port, timeout_graceful_shutdown=2)
        )
        self.http_port = urlsplit(url).port or self.settings.http_port
        self._sweeper = loop.create_task(self._sweep())
        self.hub.queues.start()
        self.hub.transport_queues.start()
        log.info(
            "tb emulator listening",
            mqtt_port=self.mqtt_port,
            http_port=self.http_port,
            rule_chains=sorted(self.hub.chains),
            root_rule_chain=self.hub.root_chain_name,
            devices=len(self.hub.registry.by_name),
        )

    async def _sweep(self) -> None:
        interval = max(0.05, min(5.0, self.settings.hub.session_inactivity_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            self.hub.expire_idle_sessions()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._mqtt is not None:
            self._mqtt.close()
        await self.hub.close()
        await self._http.aclose()
        if self._mqtt is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._mqtt.wait_closed(), timeout=2)
        self._mqtt = None
