"""Realtime: the fan-out parts of one API process, built in the app's lifespan."""

from __future__ import annotations

from typing import Any

import socketio
from redis.asyncio import Redis, RedisCluster

from cloud.api.settings import ApiSettings
from cloud.client_errors import ClientErrors
from cloud.realtime.announcer import GiftAnnouncer
from cloud.realtime.bus import FanoutManager
from cloud.realtime.events import BATCH
from cloud.realtime.hub import Hub
from cloud.realtime.live_state import LiveState
from cloud.realtime.motor_events import MotorEvents
from cloud.realtime.origins import socketio_cors
from cloud.realtime.progress_pacer import ProgressPacer
from cloud.realtime.socketio_guard import ListenerServer, SocketIoGate
from cloud.realtime.socketio_viewers import SocketIoViewers

SOCKETIO_PATH = "socket.io"


class Realtime:
    def __init__(self, settings: ApiSettings, redis: Redis | RedisCluster, errors: ClientErrors) -> None:
        self.settings = settings.realtime
        self.errors = errors
        self.hub = Hub(settings.realtime)
        self.live = LiveState(redis, settings.realtime)
        self.manager = FanoutManager(
            self.hub, url=settings.redis_url, channel=settings.realtime.redis_channel
        )
        self.sio = ListenerServer(
            errors=errors,
            max_bad_packets=settings.realtime.max_bad_packets,
            async_mode="asgi",
            client_manager=self.manager,
            cors_allowed_origins=socketio_cors(settings.realtime.allowed_origins),
            always_connect=True,  # CONNECT reaches the client before the first event we send
            logger=False,
            engineio_logger=False,
            max_http_buffer_size=settings.realtime.max_polling_body_bytes,
        )
        self.socketio_viewers = SocketIoViewers(self.sio, self.hub, self.live)
        self.asgi = SocketIoGate(
            socketio.ASGIApp(self.sio, socketio_path=SOCKETIO_PATH),
            settings.realtime,
            errors,
            full=lambda: self.hub.full(self.socketio_viewers.waiting()),
            retry_after_s=settings.http.busy_retry_after_s,
        )
        self.pacer = ProgressPacer(self.publish_batch, settings.realtime.progress_publish_interval_s)
        self.motors = MotorEvents(self.live, self.publish, self.pacer)
        self.announcer = GiftAnnouncer(
            self.live,
            self.publish_batch,
            max_pending=settings.realtime.max_pending_announcements,
            max_per_s=settings.realtime.announce_max_per_s,
            interval_s=settings.realtime.announce_interval_s,
        )

    async def publish(self, event: str, data: dict[str, Any], rooms: list[str]) -> None:
        """To every viewer in these rooms on every API instance (through Redis pub/sub)."""
        await self.sio.emit(event, data, room=rooms)

    async def publish_batch(self, events: list[tuple[str, dict[str, Any], list[str]]]) -> None:
        """Several events (name, payload, rooms) as one bus message: each viewer gets those of its
        rooms, on a plain WebSocket as one frame."""
        rooms = sorted({room for _, _, event_rooms in events for room in event_rooms})
        await self.sio.emit(BATCH, [list(event) for event in events], room=rooms)

    def start(self) -> None:
        # Listen on Redis now, not at the first Socket.IO connection as python-socketio would:
        # plain WebSocket viewers need the bus too.
        self.sio.start_client_manager()
        self.announcer.start()

    async def stop(self) -> None:
        await self.announcer.stop()
        await self.pacer.stop()
        await self.socketio_viewers.close()
        await self.sio.stop_client_manager(timeout_s=2.0)
