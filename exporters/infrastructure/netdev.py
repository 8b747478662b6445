"""Network traffic per interface (node_exporter's `netdev` collector, and speed/MTU)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

FIELDS = {
    "bytes_recv": ("receive_bytes", "Network device statistic receive_bytes."),
    "bytes_sent": ("transmit_bytes", "Network device statistic transmit_bytes."),
    "packets_recv": ("receive_packets", "Network device statistic receive_packets."),
    "packets_sent": ("transmit_packets", "Network device statistic transmit_packets."),
    "errin": ("receive_errs", "Network device statistic receive_errs."),
    "errout": ("transmit_errs", "Network device statistic transmit_errs."),
    "dropin": ("receive_drop", "Network device statistic receive_drop."),
    "dropout": ("transmit_drop", "Network device statistic transmit_drop."),
}


def parse_netdev(per_nic: Mapping, stats: Mapping, device_exclude: str) -> list[Metric]:
    """Families from psutil.net_io_counters(pernic=True) and psutil.net_if_stats()."""
    exclude = re.compile(device_exclude) if device_exclude else None
    families = {attr: CounterMetricFamily(f"node_network_{name}_total", text, labels=["device"])
                for attr, (name, text) in FIELDS.items()}
    speed = GaugeMetricFamily("node_network_speed_bytes",
                              "Network interface speed in bytes per second.", labels=["device"])
    mtu = GaugeMetricFamily("node_network_mtu_bytes", "Network interface MTU in bytes.",
                            labels=["device"])
    for device, counters in sorted(per_nic.items()):
        if exclude and exclude.search(device):
            continue
        for attr in FIELDS:
            families[attr].add_metric([device], getattr(counters, attr))
        st = stats.get(device)
        if st is not None:
            mtu.add_metric([device], st.mtu)
            # Virtual interfaces report no speed; node_exporter leaves them out too.
            if st.speed > 0:
                speed.add_metric([device], st.speed * 1_000_000 / 8)
    return [*families.values(), speed, mtu]


class NetdevCollector:
    """node_network_*{device} from psutil."""

    def __init__(self, psutil, settings=None):
        self.psutil = psutil
        self.device_exclude = (settings or {}).get("device_exclude", "")

    def collect(self) -> Iterator[Metric]:
        """Read and parse the per-interface counters and link settings."""
        yield from parse_netdev(self.psutil.net_io_counters(pernic=True) or {},
                                self.psutil.net_if_stats(), self.device_exclude)
