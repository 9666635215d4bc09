"""Lua for the command ledger: each state change and its telemetry land in Redis atomically.

Each script's KEYS, ARGV and reply are described at the top of its file; emit.lua is their shared
prelude (a per-motor strictly increasing telemetry ts, field helpers).
"""

from __future__ import annotations

from giftwheel.lua import lua_source


def _script(name: str) -> str:
    return lua_source("edge.buffer", "emit.lua", name)


SUBMIT = _script("submit.lua")
BEGIN = _script("begin.lua")
PROGRESS = _script("progress.lua")
CLEAR = _script("clear.lua")
SNAPSHOT = _script("snapshot.lua")
HOLD = _script("hold.lua")
