"""Prometheus metrics of the viewers' fan-out and the feedback, read from plain numbers at scrape time.

The Hub and the progress service count in plain integers on the event loop; nothing on the
per-frame path takes a lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud.realtime.service import Realtime


class RealtimeMetrics(Collector):
    def __init__(self, realtime: Realtime, registry: CollectorRegistry) -> None:
        self._realtime = realtime
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        hub = self._realtime.hub
        yield GaugeMetricFamily(
            "giftwheel_realtime_viewers", "Viewers connected to this process", value=hub.viewers
        )
        frames = CounterMetricFamily(
            "giftwheel_realtime_frames",
            "Deliveries to viewers (a flush of announcements counts once): written at once, or "
            "queued for a viewer not ready for them",
            labels=["path"],
        )
        frames.add_metric(["direct"], hub.frames_direct)
        frames.add_metric(["queued"], hub.frames_queued)
        yield frames
        yield CounterMetricFamily(
            "giftwheel_realtime_evictions",
            "Viewers disconnected for falling too far behind on events that are never dropped",
            value=hub.evictions,
        )
        yield CounterMetricFamily(
            "giftwheel_feedback_recovered_dones",
            "Commands closed by an edge heartbeat because their done report never arrived (a loss upstream)",
            value=self._realtime.progress.recovered_dones,
        )
        refused = CounterMetricFamily(
            "giftwheel_feedback_refused",
            "Webhook calls refused for naming a device the ledger never sent a command, or reporting "
            "done a command the ledger did not issue to that device",
            labels=["reason"],
        )
        for reason, count in sorted(self._realtime.progress.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "giftwheel_feedback_clock_ahead",
            "Telemetry stamped further ahead of this server's clock than feedback.max_ts_ahead_s "
            "(a device's or ThingsBoard's clock running fast): recorded at the server's time",
            value=self._realtime.progress.clock_ahead,
        )
