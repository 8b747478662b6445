"""Per-group process metrics for the configured service processes (like process-exporter)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass(frozen=True)
class Group:
    """A process group: processes whose name is listed or whose command line matches."""

    name: str
    names: frozenset[str] = frozenset()
    cmdline: tuple[re.Pattern, ...] = ()

    def matches(self, name: str | None, cmdline: Sequence[str] | None) -> bool:
        """Whether a process with this name and argv belongs to the group."""
        if name and name in self.names:
            return True
        if self.cmdline and cmdline:
            joined = " ".join(cmdline)
            return any(p.search(joined) for p in self.cmdline)
        return False


def groups_from_config(items) -> list[Group]:
    """Groups from the `processes.groups` config list."""
    return [Group(g["name"], frozenset(g.get("names", ())),
                  tuple(re.compile(p) for p in g.get("cmdline", ()))) for g in items]


@dataclass
class Sample:
    """What one process contributes to its group in one scrape."""

    group: str
    user: float = 0.0
    system: float = 0.0
    rss: float = 0.0
    fds: float = 0.0
    threads: float = 0.0
    start: float = 0.0


@dataclass
class GroupTotals:
    """A group's aggregate for one scrape."""

    count: int = 0
    user: float = 0.0
    system: float = 0.0
    rss: float = 0.0
    fds: float = 0.0
    threads: float = 0.0
    oldest: float | None = None


def aggregate(groups: Sequence[Group], samples: dict, finished: dict) -> dict[str, GroupTotals]:
    """Per-group totals from live samples plus the CPU time of processes that have exited."""
    totals = {g.name: GroupTotals() for g in groups}
    for name, (user, system) in finished.items():
        if name in totals:
            totals[name].user += user
            totals[name].system += system
    for s in samples.values():
        t = totals[s.group]
        t.count += 1
        t.user += s.user
        t.system += s.system
        t.rss += s.rss
        t.fds += s.fds
        t.threads += s.threads
        if s.start and (t.oldest is None or s.start < t.oldest):
            t.oldest = s.start
    return totals


def families(totals: dict[str, GroupTotals]) -> list[Metric]:
    """The pulse_process_* families from group totals (every configured group appears)."""
    cpu = CounterMetricFamily("pulse_process_cpu_seconds_total",
                              "CPU seconds used by the group's processes, including exited ones.",
                              labels=["groupname", "mode"])
    gauges = {
        "count": GaugeMetricFamily("pulse_process_num_procs",
                                   "Number of running processes in the group (0: down).",
                                   labels=["groupname"]),
        "rss": GaugeMetricFamily("pulse_process_resident_memory_bytes",
                                 "Resident memory of the group's processes.",
                                 labels=["groupname"]),
        "fds": GaugeMetricFamily("pulse_process_open_fds",
                                 "Open file descriptors of the group's processes.",
                                 labels=["groupname"]),
        "threads": GaugeMetricFamily("pulse_process_threads",
                                     "Threads of the group's processes.", labels=["groupname"]),
    }
    oldest = GaugeMetricFamily("pulse_process_oldest_start_time_seconds",
                               "Start time of the group's oldest process, in unixtime.",
                               labels=["groupname"])
    for name, t in sorted(totals.items()):
        cpu.add_metric([name, "user"], t.user)
        cpu.add_metric([name, "system"], t.system)
        for key, fam in gauges.items():
            fam.add_metric([name], getattr(t, key))
        if t.oldest is not None:
            oldest.add_metric([name], t.oldest)
    return [cpu, *gauges.values(), oldest]


class ProcessesCollector:
    """pulse_process_*{groupname} for the configured process groups.

    The CPU counter stays monotonic when a process exits: its last CPU time is
    kept in the group's total, as process-exporter does, so rate() sees no reset.
    """

    def __init__(self, psutil, settings=None, **_):
        self.psutil = psutil
        self.groups = groups_from_config((settings or {}).get("groups", ()))
        self.need_cmdline = any(g.cmdline for g in self.groups)
        self._previous: dict = {}
        self._finished: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def scan(self) -> dict:
        """{(pid, create_time): Sample} for every process that belongs to a group."""
        attrs = ["name", "create_time"] + (["cmdline"] if self.need_cmdline else [])
        found = {}
        errors = (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess)
        for proc in self.psutil.process_iter(attrs, ad_value=None):
            info = proc.info
            group = next((g for g in self.groups
                          if g.matches(info.get("name"), info.get("cmdline"))), None)
            if group is None:
                continue
            sample = Sample(group.name, start=info.get("create_time") or 0.0)
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    sample.user, sample.system = cpu.user, cpu.system
                    sample.rss = proc.memory_info().rss
                    sample.threads = proc.num_threads()
                    try:
                        sample.fds = proc.num_fds()
                    except self.psutil.AccessDenied:
                        sample.fds = 0
            except errors:
                continue
            found[(proc.pid, info.get("create_time"))] = sample
        return found

    def collect(self) -> Iterator[Metric]:
        """Scan the process table and export each group's totals."""
        if not self.groups:
            return
        current = self.scan()
        with self._lock:
            for key, old in self._previous.items():
                if key not in current:
                    acc = self._finished.setdefault(old.group, [0.0, 0.0])
                    acc[0] += old.user
                    acc[1] += old.system
            self._previous = current
            finished = {k: tuple(v) for k, v in self._finished.items()}
        yield from families(aggregate(self.groups, current, finished))
