"""Load averages (node_exporter's `loadavg` collector)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric


def parse_load(load: tuple[float, float, float]) -> list[Metric]:
    """node_load1/5/15 from a (1, 5, 15)-minute tuple."""
    return [GaugeMetricFamily(f"node_load{minutes}", f"{minutes}m load average.", value=value)
            for minutes, value in zip((1, 5, 15), load, strict=True)]


class LoadavgCollector:
    """node_load1, node_load5, node_load15."""

    def __init__(self, psutil):
        self.psutil = psutil

    def collect(self) -> Iterator[Metric]:
        """Read and parse the load averages."""
        yield from parse_load(self.psutil.getloadavg())
