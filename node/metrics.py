"""Prometheus metrics of one node (one registry per app, so several nodes share a process in
tests without clashing)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.envelopes_in = Counter(
            "tongban_envelopes_in",
            "Envelopes received, by message type and result (stored, duplicate, or error code).",
            ["type", "result"],
            registry=self.registry,
        )
        self.envelopes_out = Counter(
            "tongban_envelopes_out",
            "Delivery attempts, by partner, message type and result.",
            ["partner", "type", "result"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "tongban_delivery_latency_seconds",
            "From outbox commit to the partner's receipt stored.",
            ["partner"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "tongban_outbox_depth",
            "Envelopes waiting for delivery, per partner.",
            ["partner"],
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "tongban_outbox_oldest_age_seconds",
            "Age of the oldest envelope waiting for delivery, per partner.",
            ["partner"],
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "tongban_outbox_dead_letters",
            "Envelopes a partner refused for good, per partner.",
            ["partner"],
            registry=self.registry,
        )
        self.inbound_waiting = Gauge(
            "tongban_inbound_unapplied",
            "Received messages not yet applied (waiting for a gap in seq, or retrying).",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
