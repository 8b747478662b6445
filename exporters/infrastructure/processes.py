"""Per-group process metrics for the configured service processes (like process-exporter).

This collector reads /proc itself instead of going through psutil: one read of
/proc/<pid>/stat gives name, CPU times, threads, start time and RSS, and a
process's group is decided once per (pid, start time). Walking ~100 processes
costs ~1 ms this way against ~8 ms through psutil's Process objects, which
would make a scrape slower than node_exporter's.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass(frozen=True)
class Group:
    """A process group: processes whose name is listed or whose command line matches."""

    name: str
    names: frozenset[str] = frozenset()
    cmdline: tuple[re.Pattern, ...] = ()

    def matches(self, name: str | None, cmdline: Sequence[str] | None) -> bool:
        """Whether a process with this name (or argv[0] file name) and argv is in the group."""
        if name and name in self.names:
            return True
        # The kernel cuts names to 15 characters; argv[0] has the whole one.
        if self.names and cmdline and os.path.basename(cmdline[0]) in self.names:
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


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this collector uses (times in clock ticks)."""

    comm: str
    utime: int
    stime: int
    threads: int
    starttime: int
    rss_pages: int


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat; the name is between the first '(' and the last ')'."""
    open_paren, close_paren = text.index("("), text.rindex(")")
    fields = text[close_paren + 2:].split()
    # fields[0] is field 3 of proc(5): state.
    return ProcStat(comm=text[open_paren + 1:close_paren], utime=int(fields[11]),
                    stime=int(fields[12]), threads=int(fields[17]), starttime=int(fields[19]),
                    rss_pages=int(fields[21]))


def parse_boot_time(text: str) -> float:
    """btime from /proc/stat."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


class ProcessesCollector:
    """pulse_process_*{groupname} for the configured process groups, from a /proc root.

    The CPU counter stays monotonic when a process exits: its last CPU time is
    kept in the group's total, as process-exporter does, so rate() sees no reset.
    """

    def __init__(self, proc_root: str | os.PathLike = "/proc", settings=None,
                 clock_ticks: int | None = None, page_size: int | None = None):
        self.root = Path(proc_root)
        self.groups = groups_from_config((settings or {}).get("groups", ()))
        self.ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self._boot_time: float | None = None
        self._membership: dict[tuple[int, int], str | None] = {}
        self._previous: dict = {}
        self._finished: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _group_of(self, pid: int, stat: ProcStat) -> str | None:
        """The group of a process, decided on first sight and remembered by (pid, start)."""
        key = (pid, stat.starttime)
        if key in self._membership:
            return self._membership[key]
        try:
            raw = (self.root / str(pid) / "cmdline").read_bytes()
        except OSError:
            raw = b""
        cmdline = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0") if a]
        group = next((g.name for g in self.groups if g.matches(stat.comm, cmdline)), None)
        self._membership[key] = group
        return group

    def scan(self) -> dict:
        """{(pid, start ticks): Sample} for every process that belongs to a group."""
        if self._boot_time is None:
            self._boot_time = parse_boot_time((self.root / "stat").read_text())
        found, seen = {}, set()
        with os.scandir(self.root) as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    with open(os.path.join(entry.path, "stat")) as fh:
                        stat = parse_proc_stat(fh.read())
                except (OSError, ValueError, IndexError):
                    continue  # exited while we looked
                seen.add((pid, stat.starttime))
                group = self._group_of(pid, stat)
                if group is None:
                    continue
                try:
                    fds = len(os.listdir(os.path.join(entry.path, "fd")))
                except OSError:
                    fds = 0
                found[(pid, stat.starttime)] = Sample(
                    group, user=stat.utime / self.ticks, system=stat.stime / self.ticks,
                    rss=stat.rss_pages * self.page_size, fds=fds, threads=stat.threads,
                    start=self._boot_time + stat.starttime / self.ticks)
        self._membership = {k: v for k, v in self._membership.items() if k in seen}
        return found

    def collect(self) -> Iterator[Metric]:
        """Scan the process table and export each group's totals."""
        if not self.groups:
            return
        with self._lock:
            current = self.scan()
            for key, old in self._previous.items():
                if key not in current:
                    acc = self._finished.setdefault(old.group, [0.0, 0.0])
                    acc[0] += old.user
                    acc[1] += old.system
            self._previous = current
            finished = {k: tuple(v) for k, v in self._finished.items()}
        yield from families(aggregate(self.groups, current, finished))
