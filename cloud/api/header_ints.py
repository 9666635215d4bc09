"""Integers read from request headers: ASCII digits only, and only as many as the value can need."""

from __future__ import annotations


def unsigned(text: str, max_digits: int) -> int | None:
    """The value of 1 to ``max_digits`` ASCII digits, None for anything else.

    ``str.isdigit`` alone also says yes to "²" or "٣", which ``int`` then refuses, and ``int``
    takes " 1", "+1" and "1_0" and refuses more than 4,300 digits (sys.int_info): each of
    those would be an error past validation instead of a clear refusal.
    """
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None
