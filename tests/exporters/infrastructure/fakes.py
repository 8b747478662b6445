"""A fixture psutil: fixed numbers in psutil's own shapes, changeable between scrapes."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path
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


def fake_psutil() -> SimpleNamespace:
    """A psutil stand-in for a 2-CPU host with one disk, one real filesystem, lo and eth0."""
    ps = SimpleNamespace()
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
    return ps


def fake_statvfs(path: str) -> StatVfs:
    """statvfs results: / is a 100 GiB disk, /boot is unreadable."""
    if path == "/boot":
        raise PermissionError(13, "Permission denied")
    return StatVfs(4096, 4096, 25_000_000, 10_000_000, 9_000_000, 6_000_000, 5_000_000)


def fake_uname():
    """os.uname() of the fixture host."""
    return os.uname_result(("Linux", "fit-node-1", "6.1.0-13-amd64",
                            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1", "x86_64"))


def fake_clock() -> float:
    """A wall clock stopped at 2026-11-25 12:00 UTC."""
    return 1_795_608_000.0


TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BOOT = 1_700_000_000
# pid -> (comm, argv, user s, system s, threads, start s after boot, rss bytes, fds or None)
PROCESSES = {
    10: ("prometheus", ["/usr/bin/prometheus", "--config.file=x"], 3.0, 1.0, 12, 100,
         100 * PAGE, 40),
    11: ("python3", ["python3", "-m", "bridge"], 2.0, 0.5, 4, 200, 50 * PAGE, 10),
    12: ("python3", ["python3", "-m", "bridge"], 1.0, 0.5, 4, 300, 50 * PAGE, None),
    13: ("bash", ["bash"], 9.0, 9.0, 1, 0, 1 * PAGE, 3),
    # The kernel cuts the name to 15 characters; argv[0] has the whole one.
    14: ("prometheus-aler", ["/usr/bin/prometheus-alertmanager"], 0.5, 0.25, 8, 400,
         30 * PAGE, 20),
    15: ("weird) name (x", ["weird"], 0.0, 0.0, 1, 0, PAGE, 1),
}


def fake_proc(root: Path, processes: dict | None = None) -> Path:
    """A /proc tree with stat, cmdline and fd/ of each process, and /proc/stat's btime."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {BOOT}\nprocesses 99\n")
    (root / "self").mkdir(exist_ok=True)
    for pid, (comm, argv, user, system, threads, start, rss, fds) in (
            processes or PROCESSES).items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        fields = ["S", "1", str(pid), str(pid), "0", "-1", "4194304", "1", "0", "0", "0",
                  str(round(user * TICKS)), str(round(system * TICKS)), "0", "0", "20", "0",
                  str(threads), "0", str(start * TICKS), "1000000", str(rss // PAGE)] + ["0"] * 30
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if fds is None:
            (d / "fd").write_text("")  # unreadable fd directory
        else:
            (d / "fd").mkdir(exist_ok=True)
            for fd in range(fds):
                (d / "fd" / str(fd)).write_text("")
    return root
