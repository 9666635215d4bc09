"""The ingest metrics render as Prometheus counters and a histogram with `le` semantics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from cloud.ingest.metrics import IngestMetrics


def test_counts_and_latency_render_as_prometheus_families() -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.accepted["single"].inc()
    metrics.accepted["batch"].inc(999)
    metrics.rejected[("websocket", "invalid")].inc(3)
    for seconds in (0.001, 0.0011, 3.0):  # on a bound, just above it, above every bound
        metrics.latency["single"].observe(seconds)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("giftwheel_ingest_accepted_total", endpoint="single") == 1
    assert value("giftwheel_ingest_accepted_total", endpoint="batch") == 999
    assert value("giftwheel_ingest_duplicates_total", endpoint="single") == 0
    assert value("giftwheel_ingest_rejected_total", endpoint="websocket", reason="invalid") == 3
    assert value("giftwheel_ingest_seconds_bucket", endpoint="single", le="0.0005") == 0
    assert value("giftwheel_ingest_seconds_bucket", endpoint="single", le="0.001") == 1
    assert value("giftwheel_ingest_seconds_bucket", endpoint="single", le="0.0025") == 2
    assert value("giftwheel_ingest_seconds_bucket", endpoint="single", le="2.5") == 2
    assert value("giftwheel_ingest_seconds_bucket", endpoint="single", le="+Inf") == 3
    assert value("giftwheel_ingest_seconds_count", endpoint="single") == 3
    assert value("giftwheel_ingest_seconds_sum", endpoint="single") == 0.001 + 0.0011 + 3.0
    assert b"giftwheel_ingest_backlog" in generate_latest(registry)
