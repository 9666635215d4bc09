"""Tell when ThingsBoard keeps closing the dispatcher's session: another client uses its token.

ThingsBoard keeps one session per device (ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE, default 1): a
new session with the same access token evicts the oldest (DeviceActorMessageProcessor), and the
transport closes that channel (MqttTransportHandler.onRemoteSessionCloseCommand; on MQTT 3.1.1, which
the dispatcher speaks, without a word). Two clients on one token therefore take turns: each is
closed by the server soon after a good connect, again and again. The Redis token lease rules this
out among our workers; a client outside our Redis (a second deployment, a test script, a stale
container) only ThingsBoard sees, so the worker says it loudly here.
"""

from __future__ import annotations

import structlog

from cloud.worker.metrics import WorkerMetrics

log = structlog.get_logger(__name__)


class TakeoverWatch:
    def __init__(
        self, metrics: WorkerMetrics, *, window_s: float, alarm_after: int, token_fingerprint: str
    ) -> None:
        self._metrics = metrics
        self._window_s = window_s
        self._alarm_after = alarm_after
        self._token = token_fingerprint
        self.streak = 0

    def session_ended(self, lived_s: float, *, closed_by_server: bool) -> bool:
        """Record how a session ended; True if it was cut short by the server right after connecting.

        A short session counts like a failed connect for the reconnect backoff, so two workers that
        knock each other off slow down instead of reconnecting in a tight loop.
        """
        if not closed_by_server or lived_s >= self._window_s:
            self.streak = 0
            return False
        self.streak += 1
        self._metrics.sessions_taken_over.inc()
        if self.streak >= self._alarm_after:
            log.error(
                "dispatcher_session_taken_over",
                message=(
                    "another session is using this dispatcher's access token: ThingsBoard closed this "
                    f"worker's session {self.streak} times in a row within {self._window_s:g} s of "
                    "connecting (it keeps one session per device and closes the older one). Give every "
                    "worker its own dispatcher device and token, and stop the other client. (If no other "
                    "client has it, ThingsBoard's log says what else it refuses.)"
                ),
                token=self._token,
                streak=self.streak,
                lived_s=round(lived_s, 3),
            )
        return True
