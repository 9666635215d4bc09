"""Prometheus metrics of the ingest path, on a registry the app owns (one per app, not global)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ENDPOINTS = ("single", "batch", "websocket")
REJECT_REASONS = ("invalid", "too_large", "unauthorized", "backlog", "unavailable")


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        accepted = Counter(
            "giftwheel_ingest_accepted_total", "Events durably appended", ["endpoint"], registry=registry
        )
        duplicates = Counter(
            "giftwheel_ingest_duplicates_total",
            "Replayed eventIds answered without appending",
            ["endpoint"],
            registry=registry,
        )
        rejected = Counter(
            "giftwheel_ingest_rejected_total",
            "Events or requests refused, by reason",
            ["endpoint", "reason"],
            registry=registry,
        )
        latency = Histogram(
            "giftwheel_ingest_seconds",
            "Time from request (or frame) received to answer",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.backlog = Gauge(
            "giftwheel_ingest_backlog",
            "Unprocessed entries in the events stream(s): worker-group lag plus pending",
            registry=registry,
        )
        # Children bound once: label lookups are measurable on the hot path.
        self.accepted = {e: accepted.labels(e) for e in ENDPOINTS}
        self.duplicates = {e: duplicates.labels(e) for e in ENDPOINTS}
        self.rejected = {(e, r): rejected.labels(e, r) for e in ENDPOINTS for r in REJECT_REASONS}
        self.latency = {e: latency.labels(e) for e in ENDPOINTS}
