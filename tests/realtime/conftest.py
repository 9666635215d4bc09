"""The viewer fan-out is fed by the feedback webhook and ingest: the same API fixtures serve both."""

from tests.feedback.conftest import api, known_motors, ledger, viewer

__all__ = ["api", "known_motors", "ledger", "viewer"]
