"""Prometheus metrics of one source process, in its own registry (one source, one channel)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_GAP_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class SourceMetrics:
    def __init__(self, source: str, channel: str, registry: CollectorRegistry | None = None) -> None:
        self.source = source
        self.channel = channel
        self.registry = registry or CollectorRegistry()
        names = ("source", "channel")
        values = (source, channel)
        r = self.registry

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(name, doc, (*names, *extra), registry=r)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=r)

        # Upstream: the live feed.
        self.connected = gauge("giftwheel_source_connected", "1 while the upstream feed is connected").labels(
            *values
        )
        self.messages = counter(
            "giftwheel_source_messages", "Messages of any type received from the upstream feed"
        ).labels(*values)
        self.frames = counter("giftwheel_source_frames", "Gift messages received").labels(*values)
        self._gifts = counter("giftwheel_source_gifts", "Gifts counted and handed to ingest", "how")
        self.replays = counter(
            "giftwheel_source_replays", "Gift messages ignored as already counted (replays)"
        ).labels(*values)
        self._parse_failures = counter(
            "giftwheel_source_parse_failures",
            "Payloads that could not be read (stage: library, frame, adapter, bounds, handler)",
            "stage",
        )
        self.reconnects = counter("giftwheel_source_reconnects", "Upstream reconnect attempts").labels(
            *values
        )
        self.gap_seconds = Histogram(
            "giftwheel_source_gap_seconds",
            "Time without an upstream connection, one observation per gap",
            names,
            buckets=_GAP_BUCKETS,
            registry=r,
        ).labels(*values)
        self.open_streaks = gauge("giftwheel_source_open_streaks", "Streaks waiting for their end").labels(
            *values
        )
        self.sign_calls = counter(
            "giftwheel_source_sign_calls", "Sign-server calls (connection starts)"
        ).labels(*values)
        self.sign_rate_limited = counter(
            "giftwheel_source_sign_rate_limited", "Sign-server refusals for rate limits (429)"
        ).labels(*values)
        # Downstream: the ingest API.
        self.ingest_connected = gauge(
            "giftwheel_source_ingest_connected", "1 while the ingest WebSocket is open"
        ).labels(*values)
        self._ingest_acked = counter("giftwheel_source_ingest_acked", "Events acked by ingest", "result")
        self.ingest_rejected = counter(
            "giftwheel_source_ingest_rejected", "Events ingest rejected (adapter bugs)"
        ).labels(*values)
        self._ingest_retries = counter(
            "giftwheel_source_ingest_retries", "Events ingest could not take yet", "reason"
        )
        self.ingest_reconnects = counter(
            "giftwheel_source_ingest_reconnects", "Ingest WebSocket reconnect attempts"
        ).labels(*values)
        self.buffer_events = gauge(
            "giftwheel_source_buffer_events", "Events held until ingest acks them"
        ).labels(*values)
        self.buffer_full = counter(
            "giftwheel_source_buffer_full", "Gifts refused because the ingest buffer was full"
        ).labels(*values)
        self._values = values

    def gifts(self, how: str) -> Counter:
        return self._gifts.labels(*self._values, how)

    def parse_failures(self, stage: str) -> Counter:
        return self._parse_failures.labels(*self._values, stage)

    def ingest_acked(self, result: str) -> Counter:
        return self._ingest_acked.labels(*self._values, result)

    def ingest_retries(self, reason: str) -> Counter:
        return self._ingest_retries.labels(*self._values, reason)
