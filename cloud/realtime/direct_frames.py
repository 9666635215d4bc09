"""Direct frames: a viewer event written to an idle WebSocket as bytes encoded once for all viewers.

A server's WebSocket frames are not masked, so one event's frame is the same bytes for every viewer
whose connection negotiated no extension. The ASGI path re-encodes it per viewer and wakes a sender
task for each; at thousands of viewers per event that per-viewer Python work cost as much CPU as
the socket writes themselves (py-spy on bench/fanout.py). So the API runs uvicorn with the protocol
below, which offers the app an ASGI extension: a ``write`` callable that puts a complete frame on
the transport when the connection is open, uncompressed and its write buffer below the high-water
mark, and otherwise declines (returns False) so the caller queues the event for the ASGI path.

Under another server, or with permessage-deflate, the extension is simply absent and every frame
takes the ASGI path.
"""

from __future__ import annotations

from starlette.types import Scope

from cloud.compat.uvicorn import Request, WebSocketProtocol
from cloud.realtime.outbox import WriteFrame

EXTENSION = "giftwheel.direct_frames"


def frame_writer(scope: Scope) -> WriteFrame | None:
    """The connection's direct writer, if the server offers one for it."""
    offered = scope.get("extensions", {}).get(EXTENSION)
    return None if offered is None else offered["write"]


class DirectFramesProtocol(WebSocketProtocol):
    """uvicorn's websockets-sansio protocol, plus the direct-frames extension in each scope."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The handshake's outcome (and the extensions it agreed) is known once super() returns.
        if self.accepted_without_extensions():
            self.offer_extension(EXTENSION, {"write": self.write_frame})

    def write_frame(self, frame: bytes) -> bool:
        """Write a frame (Message.ws_frame) now, or return False if the connection cannot take it."""
        if not self.can_write_now():
            return False
        try:
            self.transport.write(frame)
        except (RuntimeError, OSError):
            # A transport torn down under us: the queued path and the connection's own close
            # deal with it, and the other viewers of this event are still served.
            return False
        return True
