"""Disk I/O per block device (node_exporter's `diskstats` collector)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric

# node_exporter's default: partitions, RAM disks and loop devices are left out.
DEFAULT_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
# psutil field -> (node_exporter name, help, scale to base unit)
FIELDS = {
    "read_count": ("node_disk_reads_completed_total",
                   "The total number of reads completed successfully.", 1),
    "write_count": ("node_disk_writes_completed_total",
                    "The total number of writes completed successfully.", 1),
    "read_bytes": ("node_disk_read_bytes_total", "The total number of bytes read successfully.",
                   1),
    "write_bytes": ("node_disk_written_bytes_total",
                    "The total number of bytes written successfully.", 1),
    "read_time": ("node_disk_read_time_seconds_total",
                  "The total number of seconds spent by all reads.", 0.001),
    "write_time": ("node_disk_write_time_seconds_total",
                   "This is the total number of seconds spent by all writes.", 0.001),
    "read_merged_count": ("node_disk_reads_merged_total",
                          "The total number of reads merged.", 1),
    "write_merged_count": ("node_disk_writes_merged_total",
                           "The number of writes merged.", 1),
    "busy_time": ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", 0.001),
}


def parse_diskstats(per_disk: Mapping, device_exclude: str) -> list[Metric]:
    """Families from psutil.disk_io_counters(perdisk=True)."""
    exclude = re.compile(device_exclude)
    families = {attr: CounterMetricFamily(name, text, labels=["device"])
                for attr, (name, text, _) in FIELDS.items()}
    for device, counters in sorted(per_disk.items()):
        if exclude.search(device):
            continue
        for attr, (_, _, scale) in FIELDS.items():
            if hasattr(counters, attr):
                families[attr].add_metric([device], getattr(counters, attr) * scale)
    return list(families.values())


class DiskstatsCollector:
    """node_disk_*_total{device} from psutil."""

    def __init__(self, psutil, settings=None):
        self.psutil = psutil
        self.device_exclude = (settings or {}).get("device_exclude", DEFAULT_DEVICE_EXCLUDE)

    def collect(self) -> Iterator[Metric]:
        """Read and parse the per-disk counters."""
        yield from parse_diskstats(self.psutil.disk_io_counters(perdisk=True) or {},
                                   self.device_exclude)
