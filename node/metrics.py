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

        # The partner directory this node follows (docs/protocol.md §12.1).
        self.directory_serial = Gauge(
            "tongban_directory_serial",
            "Serial of the partner directory in force (0: none).",
            registry=self.registry,
        )
        self.directory_age = Gauge(
            "tongban_directory_age_seconds",
            "Seconds since the directory in force was signed (its iat); -1 with none.",
            registry=self.registry,
        )
        self.directory_expires = Gauge(
            "tongban_directory_expires_timestamp_seconds",
            "When the directory in force expires (its exp), UNIX seconds; 0 with none.",
            registry=self.registry,
        )
        self.directory_regions = Gauge(
            "tongban_directory_regions",
            "Regions the directory in force lists.",
            registry=self.registry,
        )
        self.directory_error = Gauge(
            "tongban_directory_last_error",
            "1 for the code of the last refused or failed directory fetch, until one succeeds.",
            ["code"],
            registry=self.registry,
        )
        self.directory_fetches = Counter(
            "tongban_directory_fetches",
            "Directory fetches by outcome (applied, unchanged, not_modified, or a code).",
            ["result"],
            registry=self.registry,
        )
        self.known_directory_errors: set[str] = set()

    def render(self) -> bytes:
        return generate_latest(self.registry)
