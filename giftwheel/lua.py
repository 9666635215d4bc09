"""Redis Lua scripts live as .lua files next to the module that runs them; this reads them.

Redis runs a script as one source text with no ``require``, so helpers shared by several scripts
are a prelude file given first: ``lua_source("edge.buffer", "emit.lua", "submit.lua")``.
"""

from __future__ import annotations

from importlib import resources


def lua_source(package: str, *files: str) -> str:
    """The text of ``files`` (resources of ``package``), joined in order."""
    folder = resources.files(package)
    return "\n".join(folder.joinpath(name).read_text() for name in files)
