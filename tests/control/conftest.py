"""The worker tests' ThingsBoard emulator and Pi stand-in, for the control tests too."""

from tests.worker.conftest import emulator, sink

__all__ = ["emulator", "sink"]
