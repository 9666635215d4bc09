"""strict_json finds a key given twice, and passes a clean document, whatever its strings hold:
quotes, backslashes, colons, braces and escapes in keys and values, nested at any depth."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftwheel.contracts import strict_json

# Text that looks like JSON's own punctuation, so keys and values exercise the key count's corners.
tricky = st.text(alphabet=st.sampled_from(['"', "\\", ":", " ", "a", "é", "\n", "{", "}", ","]), max_size=6)
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | tricky,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky, inner, max_size=4),
    max_leaves=12,
)


def written(pairs: list[tuple[str, Any]], spacing: str) -> str:
    """An object from pairs, written by hand so that a key may appear twice."""
    sep = f"{spacing}:{spacing}"
    return "{" + ",".join(json.dumps(k) + sep + json.dumps(v) for k, v in pairs) + "}"


@given(documents, st.sampled_from(["", " ", "\t", "\r\n "]), st.booleans())
def test_clean_documents_pass_whatever_their_strings_hold(
    document: Any, spacing: str, as_bytes: bool
) -> None:
    text = json.dumps(document, separators=(",", f"{spacing}:{spacing}"), ensure_ascii=False)
    body = text.encode() if as_bytes else text
    assert strict_json.loads(body) == orjson.loads(text)


@given(st.lists(st.tuples(tricky, documents), min_size=1, max_size=5), st.data())
def test_a_key_given_twice_is_found_whatever_the_keys_hold(
    pairs: list[tuple[str, Any]], data: st.DataObject
) -> None:
    repeated = data.draw(st.sampled_from(pairs))
    text = written([*pairs, (repeated[0], data.draw(documents))], data.draw(st.sampled_from(["", " ", "\n"])))
    nested = '{"events": [' + text + "]}"
    for body in (text, nested.encode()):
        with pytest.raises(strict_json.DuplicateKeyError) as refused:
            strict_json.loads(body)
        assert refused.value.key in {k for k, _ in pairs}
