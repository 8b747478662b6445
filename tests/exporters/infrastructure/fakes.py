"""A fixture psutil: fixed numbers in psutil's own shapes, changeable between scrapes."""

from __future__ import annotations

import contextlib
from collections import namedtuple
from types import SimpleNamespace

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest "
                                  "guest_nice")
VMem = namedtuple("VMem", "total available percent used free active inactive buffers cached "
                          "shared slab")
Swap = namedtuple("Swap", "total used free percent sin sout")
Part = namedtuple("Part", "device mountpoint fstype opts")
Disk = namedtuple("Disk", "read_count write_count read_bytes write_bytes read_time write_time "
                          "read_merged_count write_merged_count busy_time")
Nic = namedtuple("Nic", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin "
                        "dropout")
NicStats = namedtuple("NicStats", "isup duplex speed mtu")
CpuStats = namedtuple("CpuStats", "ctx_switches interrupts soft_interrupts syscalls")
StatVfs = namedtuple("StatVfs", "f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree")
ProcCpu = namedtuple("ProcCpu", "user system children_user children_system")
ProcMem = namedtuple("ProcMem", "rss vms")


class NoSuchProcess(Exception):
    """psutil.NoSuchProcess."""


class AccessDenied(Exception):
    """psutil.AccessDenied."""


class ZombieProcess(NoSuchProcess):
    """psutil.ZombieProcess."""


class FakeProcess:
    """Enough of psutil.Process for the processes collector."""

    def __init__(self, pid, name, cmdline, user, system, rss, threads, fds, create_time):
        self.pid = pid
        self.info = {"name": name, "cmdline": cmdline, "create_time": create_time}
        self._cpu = ProcCpu(user, system, 0.0, 0.0)
        self._rss, self._threads, self._fds = rss, threads, fds

    def oneshot(self):
        return contextlib.nullcontext()

    def cpu_times(self):
        return self._cpu

    def memory_info(self):
        return ProcMem(self._rss, self._rss * 2)

    def num_threads(self):
        return self._threads

    def num_fds(self):
        if self._fds is None:
            raise AccessDenied()
        return self._fds


def fake_psutil() -> SimpleNamespace:
    """A psutil stand-in for a 2-CPU host with one disk, one real filesystem, lo and eth0."""
    ps = SimpleNamespace(NoSuchProcess=NoSuchProcess, AccessDenied=AccessDenied,
                         ZombieProcess=ZombieProcess)
    ps.cpu = [CpuTimes(100.0, 1.0, 50.0, 1000.0, 5.0, 0.5, 0.25, 0.0, 0.0, 0.0),
              CpuTimes(200.0, 2.0, 60.0, 900.0, 6.0, 0.5, 0.25, 0.0, 0.0, 0.0)]
    ps.cpu_times = lambda percpu=False: list(ps.cpu)
    ps.getloadavg = lambda: (0.5, 0.25, 0.125)
    ps.virtual_memory = lambda: VMem(8e9, 6e9, 25.0, 2e9, 4e9, 1e9, 5e8, 1e8, 1.5e9, 1e7, 2e8)
    ps.swap_memory = lambda: Swap(2e9, 0.0, 2e9, 0.0, 0, 0)
    ps.partitions = [
        Part("/dev/vda1", "/", "ext4", "rw,relatime"),
        Part("/dev/vda2", "/boot", "ext4", "ro,relatime"),
        Part("proc", "/proc", "proc", "rw"),
        Part("tmpfs", "/dev/shm", "tmpfs", "rw"),
        Part("cgroup2", "/sys/fs/cgroup", "cgroup2", "rw"),
        Part("/dev/vda1", "/", "ext4", "rw,relatime"),  # bind mount seen twice
    ]
    ps.disk_partitions = lambda all=False: list(ps.partitions)
    ps.disks = {"vda": Disk(10, 20, 4096, 8192, 1500, 2500, 1, 2, 3000),
                "vda1": Disk(1, 1, 1, 1, 1, 1, 1, 1, 1), "loop0": Disk(1, 1, 1, 1, 1, 1, 1, 1, 1)}
    ps.disk_io_counters = lambda perdisk=False: dict(ps.disks)
    ps.nics = {"lo": Nic(100, 100, 1, 1, 0, 0, 0, 0), "eth0": Nic(2000, 1000, 20, 10, 1, 2, 3, 4)}
    ps.net_io_counters = lambda pernic=False: dict(ps.nics)
    ps.net_if_stats = lambda: {"lo": NicStats(True, 0, 0, 65536),
                               "eth0": NicStats(True, 2, 1000, 1500)}
    ps.boot_time = lambda: 1_700_000_000.0
    ps.cpu_stats = lambda: CpuStats(12345, 678, 0, 0)
    ps.procs = [
        FakeProcess(10, "prometheus", ["/usr/bin/prometheus", "--config.file=x"], 3.0, 1.0,
                    1e8, 12, 40, 1_700_000_100.0),
        FakeProcess(11, "python3", ["python3", "-m", "bridge"], 2.0, 0.5, 5e7, 4, 10,
                    1_700_000_200.0),
        FakeProcess(12, "python3", ["python3", "-m", "bridge"], 1.0, 0.5, 5e7, 4, None,
                    1_700_000_300.0),
        FakeProcess(13, "bash", ["bash"], 9.0, 9.0, 1e6, 1, 3, 1_700_000_000.0),
    ]

    def process_iter(attrs=None, ad_value=None):
        return iter(list(ps.procs))

    ps.process_iter = process_iter
    return ps


def fake_statvfs(path: str) -> StatVfs:
    """statvfs results: / is a 100 GiB disk, /boot is unreadable."""
    if path == "/boot":
        raise PermissionError(13, "Permission denied")
    return StatVfs(4096, 4096, 25_000_000, 10_000_000, 9_000_000, 6_000_000, 5_000_000)


def fake_clock() -> float:
    """A wall clock stopped at 2026-11-25 12:00 UTC."""
    return 1_795_608_000.0
