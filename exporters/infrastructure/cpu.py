"""CPU time per cpu and mode (node_exporter's `cpu` collector)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, Metric

# psutil field -> node_exporter mode. Guest time is already inside user/nice on
# Linux, so node_exporter reports it in a metric of its own; so do we.
MODES = {"user": "user", "nice": "nice", "system": "system", "idle": "idle",
         "iowait": "iowait", "irq": "irq", "softirq": "softirq", "steal": "steal"}
GUEST = {"guest": "user", "guest_nice": "nice"}


def parse_cpu_times(per_cpu: Sequence) -> list[Metric]:
    """Families from psutil.cpu_times(percpu=True)."""
    seconds = CounterMetricFamily("node_cpu_seconds_total",
                                  "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"])
    guest = CounterMetricFamily("node_cpu_guest_seconds_total",
                                "Seconds the CPUs spent in guests (VMs) for each mode.",
                                labels=["cpu", "mode"])
    for index, times in enumerate(per_cpu):
        cpu = str(index)
        for field, mode in MODES.items():
            if hasattr(times, field):
                seconds.add_metric([cpu, mode], getattr(times, field))
        for field, mode in GUEST.items():
            if hasattr(times, field):
                guest.add_metric([cpu, mode], getattr(times, field))
    return [seconds, guest]


class CpuCollector:
    """node_cpu_seconds_total{cpu,mode} from psutil."""

    def __init__(self, psutil):
        self.psutil = psutil

    def collect(self) -> Iterator[Metric]:
        """Read and parse the per-CPU times."""
        yield from parse_cpu_times(self.psutil.cpu_times(percpu=True))
