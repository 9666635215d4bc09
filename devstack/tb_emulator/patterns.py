"""ThingsBoard's ``${metadataKey}`` and ``$[data.path]`` templates (TbNodeUtils.processPattern)."""

from __future__ import annotations

import re
from typing import Any

_DATA = re.compile(r"\$\[(.*?)]")


def _as_text(value: Any) -> str:
    # JsonNode.asText(): booleans lower case, numbers as Jackson prints them
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def process_pattern(pattern: str, metadata: dict[str, str], data: Any) -> str:
    """Metadata keys first, then data paths; unresolved templates stay as they are, like ThingsBoard."""
    result = pattern
    if "${" in result:
        for key, value in metadata.items():
            result = result.replace("${" + key + "}", value)
    if "$[" in result and isinstance(data, dict):
        for path in _DATA.findall(result):
            node: Any = data
            for key in path.split("."):
                if not key or not isinstance(node, dict):
                    node = None
                    break
                node = node.get(key)
            if node is not None and not isinstance(node, dict | list):
                result = result.replace("$[" + path + "]", _as_text(node))
    return result
