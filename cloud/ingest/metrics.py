"""Prometheus metrics of the ingest path, on a registry the app owns (one per app, not global).

The per-event counters and the latency histogram are plain numbers rendered when /metrics is
scraped: prometheus_client's children take a lock and check their state on every increment,
which measured at ~2.5% of a single post's CPU. The API serves from one thread (the event loop),
so the plain numbers need no lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

ENDPOINTS = ("single", "batch", "websocket", "console")  # console: the control room's test gifts
REJECT_REASONS = ("invalid", "too_large", "unauthorized", "backlog", "unavailable")
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class Latency:
    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*(str(b) for b in LATENCY_BUCKETS_S), "+Inf"]
        running, out = 0, []
        for bound, count in zip(bounds, self.buckets, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class IngestMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.accepted = {e: Count() for e in ENDPOINTS}
        self.duplicates = {e: Count() for e in ENDPOINTS}
        self.rejected = {(e, r): Count() for e in ENDPOINTS for r in REJECT_REASONS}
        self.latency = {e: Latency() for e in ENDPOINTS}
        registry.register(self)
        self.backlog = Gauge(
            "giftwheel_ingest_backlog",
            "Unprocessed entries in the events stream(s): worker-group lag plus pending",
            registry=registry,
        )

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily(
            "giftwheel_ingest_accepted", "Events durably appended", labels=["endpoint"]
        )
        duplicates = CounterMetricFamily(
            "giftwheel_ingest_duplicates",
            "Replayed eventIds answered without appending",
            labels=["endpoint"],
        )
        for endpoint in ENDPOINTS:
            accepted.add_metric([endpoint], self.accepted[endpoint].value)
            duplicates.add_metric([endpoint], self.duplicates[endpoint].value)
        rejected = CounterMetricFamily(
            "giftwheel_ingest_rejected",
            "Events or requests refused, by reason",
            labels=["endpoint", "reason"],
        )
        for (endpoint, reason), count in self.rejected.items():
            rejected.add_metric([endpoint, reason], count.value)
        latency = HistogramMetricFamily(
            "giftwheel_ingest_seconds",
            "Time from request (or frame) received to answer",
            labels=["endpoint"],
        )
        for endpoint, histogram in self.latency.items():
            latency.add_metric([endpoint], histogram.cumulative(), histogram.sum)
        yield from (accepted, duplicates, rejected, latency)
