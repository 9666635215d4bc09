"""ThingsBoard's stock rule chains, copied verbatim (provenance and license in README.md)."""

from pathlib import Path

STOCK_ROOT_CHAIN = Path(__file__).resolve().parent / "root_rule_chain.json"
