"""Memory and swap (node_exporter's `meminfo` collector, the fields psutil has)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

# psutil virtual_memory() field -> /proc/meminfo field node_exporter names the gauge after.
# psutil's `cached` is Cached + SReclaimable on Linux (it says so in its docs), a
# little more than node_exporter's Cached; every other field is the same number.
VIRTUAL = {"total": "MemTotal", "available": "MemAvailable", "free": "MemFree",
           "buffers": "Buffers", "cached": "Cached", "shared": "Shmem",
           "active": "Active", "inactive": "Inactive", "slab": "Slab"}
SWAP = {"total": "SwapTotal", "free": "SwapFree"}


def parse_memory(virtual, swap) -> list[Metric]:
    """node_memory_<Field>_bytes gauges from psutil's virtual_memory() and swap_memory()."""
    families = []
    for source, fields in ((virtual, VIRTUAL), (swap, SWAP)):
        for attr, field in fields.items():
            if hasattr(source, attr):
                families.append(GaugeMetricFamily(
                    f"node_memory_{field}_bytes", f"Memory information field {field}_bytes.",
                    value=getattr(source, attr)))
    return families


class MeminfoCollector:
    """node_memory_*_bytes from psutil."""

    def __init__(self, psutil):
        self.psutil = psutil

    def collect(self) -> Iterator[Metric]:
        """Read and parse memory and swap."""
        yield from parse_memory(self.psutil.virtual_memory(), self.psutil.swap_memory())
