"""Run the ThingsBoard emulator from tests, benchmarks and the demo: as a real process or in-process.

As a child process (what end-to-end and crash tests want: real sockets, kill -9, restart)::

    from devstack.tb_emulator.harness import EmulatorProcess

    with EmulatorProcess() as tb:            # shipped devices.yaml + shipped rule chain, free ports
        tb.mqtt_port, tb.http_port           # connect clients to 127.0.0.1:tb.mqtt_port
        tb.latest_telemetry("motor_01")      # {"roundsCompleted": 3, ...}
        tb.rpc_states(device="motor_01")     # [{"id", "requestId", "method", "status", ...}, ...]
        tb.set_faults(drop_pubacks=1)        # fault injection, see faults.Faults
        tb.kill(); tb.start()                # kill -9, then start again on the same ports

``EmulatorProcess(devices=[{"name": "dispatcher", "token": "t1", "type": "dispatcher"}, ...])``
takes the devices inline (or a YAML path; ``profiles=[{"name": "motor", "rule_chain": "giftwheel"}]``
with inline devices), ``rule_chain=`` one chain file or several (root + others),
``webhook_url=``/``webhook_secret=`` point the chain's REST node at your test server,
``queues=`` the rule-engine queues beside a fresh ThingsBoard's three (default: the shipped
deploy/thingsboard/queues/*.json; QueueConfig objects too), ``transport_queues=`` the core and
transport notifications poll intervals (default: deploy/compose.yaml's),
``extra_args=("--client-rpc-timeout-s", "5")`` passes CLI options.
The HTTP helpers are synchronous (urllib): fine from async tests, the emulator is another process.

In-process (fast unit-style tests; the hub's state is right there)::

    async with InProcessEmulator() as tb:
        tb.mqtt_port, tb.http_port, tb.hub.registry.by_name["motor_01"].latest
        await tb.settled()                   # the rule engine has processed what was sent so far
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from devstack.ports import free_port
from devstack.processes import LocalServer, giftwheel_argv
from devstack.tb_emulator.devices import DevicesFile, DeviceSpec, load_devices_file
from devstack.tb_emulator.hub import Hub, HubSettings
from devstack.tb_emulator.queues import QueueConfig, load_queue_file, with_queues
from devstack.tb_emulator.server import SHIPPED_CHAIN, Emulator, EmulatorSettings
from devstack.tb_emulator.transport_queues import TransportQueueSettings

SHIPPED_DEVICES = SHIPPED_CHAIN.parent / "devices.yaml"
# The rule-engine queues giftwheel adds to a fresh ThingsBoard's (docs/thingsboard.md, "Queues")
SHIPPED_QUEUES = tuple(sorted((SHIPPED_CHAIN.parent / "queues").glob("*.json")))
# The ThingsBoard the project deploys: its environment sets the core and transport poll intervals
SHIPPED_COMPOSE = SHIPPED_CHAIN.parent.parent / "compose.yaml"
HOST = "127.0.0.1"

DeviceList = Path | Sequence[Mapping[str, Any]] | Sequence[DeviceSpec] | None
ProfileList = Sequence[Mapping[str, Any]]
ChainFiles = Path | Sequence[Path]


@functools.cache  # one read of compose.yaml per process: every emulator a test builds asks
def shipped_transport_queues() -> TransportQueueSettings:
    """The core and transport notifications poll intervals deploy/compose.yaml gives ThingsBoard
    (thingsboard.yml's defaults where it sets none): the emulator runs what we deploy, as it runs the
    shipped rule-engine queues."""
    env = yaml.safe_load(SHIPPED_COMPOSE.read_text())["services"]["thingsboard"]["environment"]
    stock = TransportQueueSettings()
    return dataclasses.replace(
        stock,
        core_poll_interval_ms=int(env.get("TB_QUEUE_CORE_POLL_INTERVAL_MS", stock.core_poll_interval_ms)),
        transport_poll_interval_ms=int(
            env.get("TB_QUEUE_TRANSPORT_NOTIFICATIONS_POLL_INTERVAL_MS", stock.transport_poll_interval_ms)
        ),
    )


class EmulatorError(RuntimeError):
    pass


def _inline_devices(devices: DeviceList, profiles: ProfileList) -> dict[str, Any] | None:
    """The devices file's content for devices given inline; None for a file (or the shipped one)."""
    if devices is None or isinstance(devices, Path):
        if profiles:
            raise ValueError("profiles= goes with inline devices; a devices file declares its own")
        return None
    return {
        "profiles": [dict(p) for p in profiles],
        "devices": [d.model_dump() if isinstance(d, DeviceSpec) else dict(d) for d in devices],
    }


def _chain_list(rule_chain: ChainFiles) -> list[Path]:
    return [rule_chain] if isinstance(rule_chain, Path) else list(rule_chain)


class EmulatorHttp:
    """Synchronous client for the emulator's HTTP side (endpoints in http_api.ROUTES)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, body: Any = None, *, timeout_s: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        url = self.base_url + urllib.parse.quote(path, safe="/?=&")
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (loopback URL we built)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise EmulatorError(f"GET {path} -> {status}: {body}")
        return body

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/health")
        return result

    def devices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/devices")
        return result

    def device(self, name: str) -> dict[str, Any]:
        """Device view with attributes and latest telemetry ({key: {"ts", "value"}})."""
        result: dict[str, Any] = self.get(f"/api/devices/{name}")
        return result

    def latest_telemetry(self, name: str) -> dict[str, Any]:
        """Latest value per telemetry key, as saved by the chain's Save Timeseries node."""
        return {k: v["value"] for k, v in self.get(f"/api/devices/{name}/telemetry").items()}

    def timeseries(self, name: str, since_ms: int = 0) -> list[dict[str, Any]]:
        """Every saved telemetry group [{"ts", "values"}] in arrival order (last 10,000)."""
        result: list[dict[str, Any]] = self.get(f"/api/devices/{name}/timeseries?since={since_ms}")
        return result

    def sessions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/sessions")
        return result

    def is_connected(self, name: str) -> bool:
        """True if the device has its own MQTT session or a sub-device session on a gateway."""
        return any(s["device"] == name or name in s["subDevices"] for s in self.sessions())

    def rpc_states(self, device: str | None = None) -> list[dict[str, Any]]:
        """Server-side RPC records, oldest first: id, device, requestId, method, params, status, history."""
        result: list[dict[str, Any]] = self.get("/api/rpc" + (f"?device={device}" if device else ""))
        return result

    def rpc(self, rpc_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/rpc/{rpc_id}")
        return result

    def send_rpc(
        self,
        device: str,
        method: str,
        params: Any = None,
        *,
        oneway: bool = False,
        timeout_ms: int = 10_000,
        persistent: bool = False,
        retries: int | None = None,
    ) -> tuple[int, Any]:
        """Server-side RPC through the rule chain ("RPC Request to Device"), like ThingsBoard's REST API.

        Returns (HTTP status, body): 200 with the device's reply (or {"rpcId"} if persistent),
        504 with {"error": "TIMEOUT" | "NO_ACTIVE_CONNECTION"}.
        """
        body: dict[str, Any] = {
            "method": method,
            "params": {} if params is None else params,
            "timeout": timeout_ms,
        }
        if persistent:
            body["persistent"] = True
        if retries is not None:
            body["retries"] = retries
        kind = "oneway" if oneway else "twoway"
        return self.request("POST", f"/api/rpc/{kind}/{device}", body, timeout_s=timeout_ms / 1000 + 10)

    def set_shared_attributes(self, device: str, values: dict[str, Any]) -> dict[str, Any]:
        status, body = self.request("POST", f"/api/devices/{device}/attributes/shared", values)
        if status != 200:
            raise EmulatorError(f"shared attributes -> {status}: {body}")
        result: dict[str, Any] = body
        return result

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault settings (faults.Faults fields), e.g. drop_pubacks=2, gateway_reply_delay_ms=500."""
        status, body = self.request("PATCH", "/api/faults", faults)
        if status != 200:
            raise EmulatorError(f"faults -> {status}: {body}")
        result: dict[str, Any] = body
        return result

    def reset_faults(self) -> None:
        self.request("POST", "/api/faults/reset")

    def cut_session(self, device: str) -> int:
        """Abort the device's TCP connection(s) without a DISCONNECT; returns how many were cut."""
        cut: int = self.request("POST", f"/api/faults/cut-session/{device}")[1]["cut"]
        return cut

    def redeliver_rpc(self, device: str) -> int:
        """Re-send the device's pending RPCs as ThingsBoard does on re-subscribe; returns how many."""
        count: int = self.request("POST", f"/api/faults/redeliver-rpc/{device}")[1]["redelivered"]
        return count

    def webhook_calls(self) -> list[dict[str, Any]]:
        """The REST API call node's recent requests (url, headers, body, statusCode, error)."""
        result: list[dict[str, Any]] = self.get("/api/webhook/calls")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/stats")
        return result


class EmulatorProcess(EmulatorHttp, LocalServer):
    """``giftwheel tb-emulator`` as a child process on fixed free ports (kept across restarts);
    ``stop()`` is SIGTERM (sessions are closed, it exits 0), ``kill()`` drops every connection at once
    and all in-memory state with them."""

    error = EmulatorError

    def __init__(
        self,
        devices: DeviceList = None,
        *,
        profiles: ProfileList = (),
        rule_chain: ChainFiles = SHIPPED_CHAIN,
        mqtt_port: int | None = None,
        http_port: int | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        queues: Sequence[Path | QueueConfig] = SHIPPED_QUEUES,
        transport_queues: TransportQueueSettings | None = None,
        extra_args: Sequence[str] = (),
        log_level: str = "WARNING",
    ) -> None:
        # Ready once the emulator writes its ready file (in the directory LocalServer makes).
        LocalServer.__init__(self, "tb", mqtt_port, ready=lambda: self._ready_file.exists())
        self.mqtt_port = self.port
        self.http_port = http_port or free_port()
        while http_port is None and self.http_port == self.mqtt_port:  # two probes, one free port
            self.http_port = free_port()
        EmulatorHttp.__init__(self, f"http://{HOST}:{self.http_port}")
        inline = _inline_devices(devices, profiles)
        if inline is not None:
            self.devices_file = self.workdir / "devices.yaml"
            self.devices_file.write_text(yaml.safe_dump(inline, sort_keys=False))
        else:
            self.devices_file = devices if isinstance(devices, Path) else SHIPPED_DEVICES
        self.rule_chains = _chain_list(rule_chain)
        self.queue_files = [self._queue_file(q, n) for n, q in enumerate(queues)]
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.transport_queues = transport_queues or shipped_transport_queues()
        self.extra_args = tuple(extra_args)
        self.log_level = log_level
        self._ready_file = self.workdir / "ready"

    def command(self) -> list[str]:
        args = giftwheel_argv(
            "tb-emulator",
            "--host", self.host,
            "--mqtt-port", str(self.mqtt_port),
            "--http-port", str(self.http_port),
            "--devices", str(self.devices_file),
            "--ready-file", str(self._ready_file),
            "--log-level", self.log_level,
        )  # fmt: skip
        for chain in self.rule_chains:
            args += ["--rule-chain", str(chain)]
        for queue in self.queue_files:
            args += ["--queue", str(queue)]
        if self.webhook_url:
            args += ["--webhook-url", self.webhook_url]
        if self.webhook_secret:
            args += ["--webhook-secret", self.webhook_secret]
        args += [
            "--core-poll-interval-ms", str(self.transport_queues.core_poll_interval_ms),
            "--transport-poll-interval-ms", str(self.transport_queues.transport_poll_interval_ms),
        ]  # fmt: skip
        return args + list(self.extra_args)

    def _queue_file(self, queue: Path | QueueConfig, n: int) -> Path:
        if isinstance(queue, Path):
            return queue
        path = self.workdir / f"queue-{n}.json"
        path.write_text(queue.model_dump_json(by_alias=True))
        return path

    def start(self, timeout_s: float = 15.0) -> Self:
        if not self.running:
            self._ready_file.unlink(missing_ok=True)
        return super().start(timeout_s)

    def log_text(self) -> str:
        return self.log_tail(lines=1_000_000)

    def close(self) -> None:
        self.kill()
        super().close()


class InProcessEmulator:
    """The emulator in the test's own event loop, on free ports; ``hub`` exposes its state."""

    def __init__(
        self,
        devices: DeviceList = None,
        *,
        profiles: ProfileList = (),
        rule_chain: ChainFiles = SHIPPED_CHAIN,
        hub_settings: HubSettings | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        queues: Sequence[Path | QueueConfig] = SHIPPED_QUEUES,
    ) -> None:
        """``queues``: added to a fresh install's three (a same-named one replaces it); files or configs."""
        inline = _inline_devices(devices, profiles)
        if inline is not None:
            fleet = DevicesFile.model_validate(inline)
        else:
            fleet = load_devices_file(devices if isinstance(devices, Path) else SHIPPED_DEVICES)
        settings = EmulatorSettings(
            host=HOST,
            mqtt_port=0,
            http_port=0,
            hub=dataclasses.replace(
                hub_settings or HubSettings(transport_queues=shipped_transport_queues()),
                queues=tuple(
                    with_queues(q if isinstance(q, QueueConfig) else load_queue_file(q) for q in queues)
                ),
            ),
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
        )
        self.emulator = Emulator.from_files(settings, fleet, _chain_list(rule_chain))
        self.host = HOST

    @property
    def hub(self) -> Hub:
        return self.emulator.hub

    @property
    def mqtt_port(self) -> int:
        return self.emulator.mqtt_port

    @property
    def http_port(self) -> int:
        return self.emulator.http_port

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    async def __aenter__(self) -> Self:
        await self.emulator.start()
        return self

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Wait until the rule engine and the RPC path's queues (transport_queues.py) have done what
        was sent so far: ThingsBoard acknowledges a message once it is queued, and processes it later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not (self.hub.queues.idle and self.hub.transport_queues.idle):
            if loop.time() > deadline:
                raise TimeoutError(
                    f"queues still busy after {timeout_s} s: {self.hub.queues.view()}"
                    f" {self.hub.transport_queues.view()}"
                )
            await asyncio.sleep(0.005)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.emulator.stop()
