"""`giftwheel source`: argument parsing, and a clear refusal when TikTokLive is not installed."""

from __future__ import annotations

import sys

import pytest

from cloud.sources.tiktok import SourceUnavailable, load_library
from giftwheel.cli import main


def test_without_tiktoklive_the_tiktok_source_refuses_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry in sys.modules makes `import TikTokLive` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "TikTokLive", None)
    # Leave the process-wide logging setup of the test session alone.
    monkeypatch.setattr("giftwheel.logs.configure", lambda *_args, **_kwargs: None)
    with pytest.raises(SourceUnavailable, match=r"giftwheel\[tiktok\].*AGPL"):
        load_library()
    assert main(["source", "tiktok", "@someone"]) == 2
    assert "pip install 'giftwheel[tiktok]'" in capsys.readouterr().err


def test_a_source_kind_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["source"])
    assert "KIND" in capsys.readouterr().err
