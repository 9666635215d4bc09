"""One string table per language: every table has the keys the page uses, no more, with the same
placeholders; the server lists the tables, so adding a language is adding a file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.feedback.conftest import Api

OVERLAY = Path(__file__).resolve().parents[2] / "cloud" / "api" / "overlay"
TABLES = sorted(OVERLAY.glob("lang-*.json"))
# Keys the page builds at run time: status.<state>, goal.<unit>.
BUILT_KEYS = {"status.connecting", "status.live", "status.reconnecting", "goal.diamonds", "goal.rounds"}


def keys_the_page_uses() -> set[str]:
    scripts = "".join(path.read_text() for path in OVERLAY.glob("*.js"))
    return set(re.findall(r'\bt\(\s*"([\w.]+)"', scripts)) | BUILT_KEYS


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_english_has_every_key_the_page_uses_and_no_other() -> None:
    english = json.loads((OVERLAY / "lang-en.json").read_text())
    assert set(english) == keys_the_page_uses()


@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.stem)
def test_every_table_has_the_same_keys_and_placeholders_as_english(table: Path) -> None:
    english = json.loads((OVERLAY / "lang-en.json").read_text())
    strings = json.loads(table.read_text())
    assert set(strings) == set(english)
    for key, text in strings.items():
        assert isinstance(text, str), key
        assert text.strip(), key
        assert placeholders(text) == placeholders(english[key]), key


async def test_the_server_lists_the_tables_and_serves_only_the_page_s_own_files(api: Api) -> None:
    listed = (await api.client.get("/overlay/languages.json")).json()
    assert listed == [p.stem.removeprefix("lang-") for p in TABLES]
    assert {"en", "vi"} <= set(listed)
    vietnamese = await api.client.get("/overlay/lang-vi.json")
    assert vietnamese.json()["wheel.idle"] == "đang chờ quà"
    assert vietnamese.headers["content-type"] == "application/json"
    for path in (
        "/overlay/lang-xx.json",
        "/overlay/__init__.py",
        "/overlay/..%2F__init__.py",
        "/overlay/index.html",
    ):
        assert (await api.client.get(path)).status_code == 404, path
