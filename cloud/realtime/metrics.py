"""Prometheus metrics of the viewers' fan-out, read from plain numbers at scrape time.

The Hub counts in plain integers on the event loop; nothing on the per-frame path takes a lock.
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
