"""Prometheus metrics of the feedback webhook, read from the service's plain counts at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud.feedback.service import FeedbackService


class FeedbackMetrics(Collector):
    def __init__(self, feedback: FeedbackService, registry: CollectorRegistry) -> None:
        self._feedback = feedback
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "giftwheel_feedback_recovered_dones",
            "Commands closed by an edge heartbeat because their done report never arrived (a loss upstream)",
            value=self._feedback.recovered_dones,
        )
        refused = CounterMetricFamily(
            "giftwheel_feedback_refused",
            "Webhook calls refused for naming a device the ledger never sent a command, or reporting "
            "done a command the ledger did not issue to that device",
            labels=["reason"],
        )
        for reason, count in sorted(self._feedback.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "giftwheel_feedback_clock_ahead",
            "Telemetry stamped further ahead of this server's clock than feedback.max_ts_ahead_s "
            "(a device's or ThingsBoard's clock running fast): recorded at the server's time",
            value=self._feedback.clock_ahead,
        )
