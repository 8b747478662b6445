"""Boot time, context switches and interrupts (node_exporter's `stat` collector)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def parse_stat(boot_time: float, cpu_stats) -> list[Metric]:
    """node_boot_time_seconds, node_context_switches_total, node_intr_total."""
    return [
        GaugeMetricFamily("node_boot_time_seconds", "Node boot time, in unixtime.",
                          value=boot_time),
        CounterMetricFamily("node_context_switches_total", "Total number of context switches.",
                            value=cpu_stats.ctx_switches),
        CounterMetricFamily("node_intr_total", "Total number of interrupts serviced.",
                            value=cpu_stats.interrupts),
    ]


class StatCollector:
    """Kernel and system statistics psutil exposes."""

    def __init__(self, psutil):
        self.psutil = psutil

    def collect(self) -> Iterator[Metric]:
        """Read and parse boot time and CPU statistics."""
        yield from parse_stat(self.psutil.boot_time(), self.psutil.cpu_stats())
