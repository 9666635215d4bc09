"""The ThingsBoard versions the emulator follows, each pinned to the source it was read from."""

from __future__ import annotations

from enum import StrEnum


class TbVersion(StrEnum):
    """Selects the rule node versions, configuration schemas and upgrades-on-save to follow."""

    V4_3 = "4.3"  # thingsboard/thingsboard tag v4.3.0.1: deploy/compose.yaml's TB_VERSION
    V4_4 = "4.4"  # thingsboard/thingsboard master @dfe65d5 (4.4.0-SNAPSHOT)


DEFAULT_TB_VERSION = TbVersion.V4_3
