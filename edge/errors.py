"""The edge's exception tree: each boundary (config, GPIO, local Redis) translates into one of these."""

from __future__ import annotations

# The exit code of a start-up error a restart cannot fix (config, GPIO pins, state_dir):
# systemd/giftwheel-edge.service's RestartPreventExitStatus.
EXIT_CONFIG = 2


class EdgeError(Exception):
    """Base of every error the edge raises on purpose."""


class ConfigError(EdgeError):
    """The edge config file is missing, unreadable or invalid; the message names the field."""


class PinBackendError(EdgeError):
    """A configured GPIO backend cannot load on this machine (never silently replaced by simulation)."""


class BufferUnavailable(EdgeError):
    """The local Redis buffer cannot be reached; the caller retries or answers UNAVAILABLE."""


class EStopEngaged(EdgeError):
    """A resume while the emergency stop button is pressed: the motor stays stopped."""
