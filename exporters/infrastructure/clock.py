"""The system clock (node_exporter's `time` collector), for clock-skew alerts."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric


class TimeCollector:
    """node_time_seconds from the injected wall clock."""

    def __init__(self, clock):
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """The current time."""
        yield GaugeMetricFamily("node_time_seconds", "System time in seconds since epoch (1970).",
                                value=self.clock())
