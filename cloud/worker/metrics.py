"""Prometheus metrics of one worker process (own registry, so tests can run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lag = Gauge(
            "giftwheel_worker_lag_entries",
            "Entries of a stream not yet acked by the group",
            ["stream"],
            registry=r,
        )
        self.batch_size = Histogram(
            "giftwheel_worker_batch_entries",
            "Entries per batch read from a stream",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1_000, 5_000),
            registry=r,
        )
        self.events = Counter(
            "giftwheel_worker_events_total", "Events handled, by outcome", ["outcome"], registry=r
        )
        # Children looked up once: labels() takes a lock and builds a key on every call.
        self.events_invalid = self.events.labels("invalid")
        self.events_skipped = self.events.labels("skipped")
        self.events_commanded = self.events.labels("commanded")
        self.commands = Counter("giftwheel_worker_commands_total", "Commands published", registry=r)
        self.publish_seconds = Histogram(
            "giftwheel_worker_publish_seconds",
            "PUBLISH to PUBACK from ThingsBoard",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.retries = Counter(
            "giftwheel_worker_retries_total", "Commands sent again with the same commandId", registry=r
        )
        self.failed = Counter(
            "giftwheel_worker_commands_failed_total",
            "Commands given up on (visible in the ledger)",
            registry=r,
        )
        # A delivered command whose done the cloud has not seen, asked after again (its edge sends a
        # finished one's done again), and what the edge answered: pending (queued or turning), done
        # (its done was sent again: a done report had been lost upstream), cleared, unknown (the
        # edge has no record of it: failed at once), error (no answer from the edge: asked again later).
        self.reasks = Counter(
            "giftwheel_worker_reasks_total", "Delivered commands asked after again", registry=r
        )
        self.reask_answers = Counter(
            "giftwheel_worker_reask_answers_total",
            "Edges' answers to re-asks, by outcome",
            ["outcome"],
            registry=r,
        )
        self.replies = Counter(
            "giftwheel_worker_replies_total", "RPC answers from ThingsBoard, by kind", ["kind"], registry=r
        )
        self.replies_accepted = self.replies.labels("accepted")
        self.replies_error = self.replies.labels("error")
        self.replies_malformed = self.replies.labels("malformed")
        # ... counted again here when it changed nothing: it answered a send superseded since, or
        # came after the command moved on (done, failed).
        self.replies_ignored = self.replies.labels("ignored")
        self.dlq_size = Gauge("giftwheel_worker_dlq_entries", "Entries in the dead-letter stream", registry=r)
        self.dead_lettered = Counter(
            "giftwheel_worker_dead_lettered_total", "Entries moved to the dead-letter stream", registry=r
        )
        self.mqtt_connected = Gauge(
            "giftwheel_worker_mqtt_connected", "1 while connected to ThingsBoard", registry=r
        )
        self.sessions_taken_over = Counter(
            "giftwheel_worker_dispatcher_sessions_taken_over_total",
            "Dispatcher sessions ThingsBoard closed soon after a good connect (another client on the token?)",
            registry=r,
        )
        self.mqtt_reconnects = Counter(
            "giftwheel_worker_mqtt_connect_failures_total", "Failed attempts to reach ThingsBoard", registry=r
        )
        self.shards_owned = Gauge(
            "giftwheel_worker_shards_owned", "Stream shards this worker owns", registry=r
        )
        self.control_requests = Counter(
            "giftwheel_worker_control_requests_total",
            "Control requests carried out (stop, hold, resume, cancel), by action and result",
            ["action", "result"],
            registry=r,
        )
        self.reconcile_rpcs = Counter(
            "giftwheel_worker_reconcile_rpcs_total",
            "Hold or resume RPCs sent to a motor whose reported state disagreed with the cloud's holds",
            ["method", "result"],
            registry=r,
        )
        self.rules_reload_failures = Gauge(
            "giftwheel_worker_rules_invalid", "1 while the rules file on disk is rejected", registry=r
        )
