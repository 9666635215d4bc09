"""Lua for the command ledger: each state change and its telemetry land in Redis atomically.

Each script's KEYS, ARGV and reply are described at the top of its file; emit.lua is their shared
prelude (a per-motor strictly increasing telemetry ts, field helpers); command.lua holds the steps
of running a command, which the scripts that run them share.
"""

from __future__ import annotations

from giftwheel.lua import lua_source


def _script(name: str) -> str:
    return lua_source("edge.buffer", "emit.lua", name)


def _command_script(name: str) -> str:
    return lua_source("edge.buffer", "emit.lua", "command.lua", name)


SUBMIT = _command_script("submit.lua")
BEGIN = _command_script("begin.lua")
PROGRESS = _command_script("progress.lua")
FINISH = _command_script("finish.lua")
CLEAR = _script("clear.lua")
SNAPSHOT = _script("snapshot.lua")
HOLD = _script("hold.lua")
RECALL = _script("recall.lua")
