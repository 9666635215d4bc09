"""A Redis reply as text: a client made with decode_responses=True answers str, one without bytes,
and the cloud's stores are handed either (the API and worker connect without, tests often with)."""

from __future__ import annotations


def as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
