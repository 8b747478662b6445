"""The infrastructure exporter (`python -m exporters.infrastructure`): the host, via psutil.

Series carry node_exporter's names and labels wherever psutil has the same
data, so node_exporter dashboards and alerts work against this exporter.
Process groups read /proc directly (processes.py says why).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psutil as _psutil
from flask import Flask
from prometheus_client import CollectorRegistry

from exporters.infrastructure.clock import TimeCollector
from exporters.infrastructure.cpu import CpuCollector
from exporters.infrastructure.diskstats import DiskstatsCollector
from exporters.infrastructure.filesystem import FilesystemCollector
from exporters.infrastructure.loadavg import LoadavgCollector
from exporters.infrastructure.meminfo import MeminfoCollector
from exporters.infrastructure.netdev import NetdevCollector
from exporters.infrastructure.processes import ProcessesCollector
from exporters.infrastructure.stat import StatCollector
from exporters.infrastructure.uname import UnameCollector
from exporters.scrape import ScrapeCollector
from pulse.config import Config
from pulse.service import add_standard_routes

COMPONENT = "exporters.infrastructure"

@dataclass(frozen=True)
class Sources:
    """Everything the host collectors read from (real by default, fakes in tests)."""

    psutil: object
    clock: Callable[[], float]
    statvfs: Callable
    proc_root: str
    uname: Callable
    settings: Mapping  # the exporters.infrastructure section


def _settings(src: Sources, name: str) -> Mapping:
    return src.settings.get(name, {})


# The collector table: name -> (enabled by default, factory given the sources). Each collector
# is built with only what it reads. Every name here is a key of `collectors` in
# infrastructure.schema.json and a --collector.<name> flag.
COLLECTORS: dict[str, tuple[bool, Callable[[Sources], object]]] = {
    "cpu": (True, lambda src: CpuCollector(src.psutil)),
    "loadavg": (True, lambda src: LoadavgCollector(src.psutil)),
    "meminfo": (True, lambda src: MeminfoCollector(src.psutil)),
    "filesystem": (True, lambda src: FilesystemCollector(src.psutil, src.statvfs,
                                                         _settings(src, "filesystem"))),
    "diskstats": (True, lambda src: DiskstatsCollector(src.psutil, _settings(src, "diskstats"))),
    "netdev": (True, lambda src: NetdevCollector(src.psutil, _settings(src, "netdev"))),
    "stat": (True, lambda src: StatCollector(src.psutil)),
    "time": (True, lambda src: TimeCollector(src.clock)),
    "uname": (True, lambda src: UnameCollector(src.uname, src.proc_root)),
    # Process groups read proc_root, not psutil.
    "processes": (True, lambda src: ProcessesCollector(src.proc_root,
                                                       _settings(src, "processes"))),
}


def enabled_collectors(section: Mapping, overrides: Mapping[str, bool] | None = None) -> list[str]:
    """Collector names switched on: table default < config `collectors` < command-line flags."""
    toggles = dict(section.get("collectors", {}))
    toggles.update(overrides or {})
    return [name for name, (default, _) in COLLECTORS.items() if toggles.get(name, default)]


def build_collectors(section: Mapping, overrides: Mapping[str, bool] | None = None, *,
                     psutil=_psutil, clock=time.time, statvfs=os.statvfs,
                     proc_root: str = "/proc", uname=os.uname) -> ScrapeCollector:
    """The scrape collector over every enabled collector, each given its own sources."""
    src = Sources(psutil, clock, statvfs, proc_root, uname, section)
    return ScrapeCollector((name, COLLECTORS[name][1](src))
                           for name in enabled_collectors(section, overrides))


def create_app(cfg: Config, registry: CollectorRegistry | None = None, *,
               overrides: Mapping[str, bool] | None = None, psutil=_psutil,
               clock=time.time, statvfs=os.statvfs, proc_root: str = "/proc",
               uname=os.uname) -> Flask:
    """The exporter's WSGI app: /metrics (every enabled collector) and health endpoints."""
    registry = registry or CollectorRegistry()
    section = cfg.exporters.infrastructure
    registry.register(build_collectors(section, overrides, psutil=psutil, clock=clock,
                                       statvfs=statvfs, proc_root=proc_root, uname=uname))
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    add_standard_routes(app, registry, COMPONENT)
    return app
