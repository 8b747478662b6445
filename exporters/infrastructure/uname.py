"""System identity (node_exporter's `uname` collector): node_uname_info."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

LABELS = ["domainname", "machine", "nodename", "release", "sysname", "version"]


def parse_uname(uname, domainname: str) -> Metric:
    """node_uname_info from an os.uname() result and the NIS domain name."""
    family = GaugeMetricFamily("node_uname_info", "Labeled system information as provided by "
                               "the uname system call.", labels=LABELS)
    family.add_metric([domainname or "(none)", uname.machine, uname.nodename, uname.release,
                       uname.sysname, uname.version], 1.0)
    return family


class UnameCollector:
    """node_uname_info{domainname,machine,nodename,release,sysname,version} = 1."""

    def __init__(self, uname: Callable = os.uname, proc_root: str | os.PathLike = "/proc"):
        self.uname = uname
        self.domain_file = Path(proc_root) / "sys" / "kernel" / "domainname"

    def collect(self) -> Iterator[Metric]:
        """Read uname and the domain name (which os.uname() does not give)."""
        try:
            domain = self.domain_file.read_text().strip()
        except OSError:
            domain = ""
        yield parse_uname(self.uname(), domain)
