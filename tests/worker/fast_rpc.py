"""ThingsBoard's RPC timeline in seconds instead of a minute, the same on the emulator and in the worker.

The emulated chain's "RPC to motor" holds an RPC ``FAST_RPC.chain_timeout_s``, its transport
answers ``{"error":"timeout"}`` after ``FAST_RPC.client_timeout_s``, and the worker is told exactly
that (``worker_settings(..., rpc=FAST_RPC_SETTINGS)``), as production's settings mirror the server's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloud.worker.rpc_timeline import RpcTimeline
from devstack.tb_emulator.server import Emulator
from tests.emulator.conftest import chain_with_rpc_timeout
from tests.worker.conftest import emulator_hub, start_emulator

FAST_RPC = RpcTimeline(chain_timeout_s=2, client_timeout_s=4.0, margin_s=0.5, retry_pause_s=0.2)
FAST_RPC_SETTINGS: dict[str, Any] = FAST_RPC.model_dump()


def fast_rpc_chain(chain_dir: Path) -> Path:
    return chain_with_rpc_timeout(chain_dir, FAST_RPC.chain_timeout_s)


def fast_rpc_emulator_args(chain_dir: Path) -> dict[str, Any]:
    """Keyword arguments for an EmulatorProcess on the fast timeline."""
    return {
        "rule_chain": fast_rpc_chain(chain_dir),
        "extra_args": ("--client-rpc-timeout-s", str(FAST_RPC.client_timeout_s)),
    }


async def start_fast_rpc_emulator(
    chain_dir: Path, mqtt_port: int = 0, *, client_rpc_timeout_s: float = FAST_RPC.client_timeout_s
) -> Emulator:
    """The shipped devices and chain in this process, on the fast timeline; ``stop()`` it."""
    hub = emulator_hub(client_rpc_timeout_s=client_rpc_timeout_s)
    return await start_emulator(mqtt_port, chain=fast_rpc_chain(chain_dir), hub=hub)
