"""Prometheus metrics of one gateway process (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from fare_gateway.riders.disputes import Backlog


class Metrics:
    """Counters and histograms the gateway exports on /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.taps = Counter("transit_taps_total", "Taps processed, by outcome", ["status"],
                            registry=r)
        self.quarantined = Counter("transit_quarantined_total",
                                   "Messages refused and kept for inspection, by reason",
                                   ["reason"], registry=r)
        self.batches = Histogram("transit_tap_batch_size", "Taps committed per transaction",
                                 buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
                                 registry=r)
        self.batch_seconds = Histogram("transit_tap_batch_seconds",
                                       "Time to price and commit one batch", registry=r)
        self.db_retries = Counter("transit_db_retries_total",
                                  "Batches retried after a database error", registry=r)
        self.queue_depth = Gauge("transit_consumer_queue_depth",
                                 "Messages received but not yet committed", registry=r)
        self.broker_connected = Gauge("transit_broker_connected",
                                      "1 while the consumer is connected", registry=r)
        self.receipts = Counter("transit_receipts_published_total", "Receipts published",
                                registry=r)
        self.device_changes_heard = Gauge(
            "transit_device_changes_heard",
            "1 while device changes (revocations, moves) are heard as they commit", registry=r)

    def watch_disputes(self, backlog: Callable[[], Backlog | None]) -> None:
        """Export the dispute backlog, read at each scrape (`DisputeGauges`)."""
        self.registry.register(DisputeGauges(backlog))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DisputeGauges:
    """The unanswered disputes by state now, and the oldest one's age, from one query per
    scrape: `transit_disputes{state="open"|"escalated"|"overdue"}` and
    `transit_dispute_oldest_unanswered_seconds`. While the database cannot say, the two
    families are exported empty rather than failing the whole scrape."""

    def __init__(self, backlog: Callable[[], Backlog | None]) -> None:
        self.backlog = backlog

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("transit_disputes", "Unanswered disputes now, by state",
                                  labels=["state"]),
                GaugeMetricFamily("transit_dispute_oldest_unanswered_seconds",
                                  "How long the oldest unanswered dispute has waited"))

    def describe(self) -> Iterator[Metric]:
        """The families, without reading the database (asked at registration)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        states, oldest = self._families()
        backlog = self.backlog()
        if backlog is not None:
            states.add_metric(["open"], backlog.open)
            states.add_metric(["escalated"], backlog.escalated)
            states.add_metric(["overdue"], backlog.overdue)
            oldest.add_metric([], backlog.oldest_age_s)
        yield states
        yield oldest
