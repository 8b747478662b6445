"""Filesystem sizes and inodes per mount (node_exporter's `filesystem` collector)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# node_exporter's defaults: pseudo, virtual and container-internal filesystems.
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)")
DEFAULT_FS_TYPES_EXCLUDE = (
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|"
    "iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|"
    "sysfs|tracefs)$")
LABELS = ["device", "fstype", "mountpoint"]
GAUGES = {
    "size_bytes": "Filesystem size in bytes.",
    "free_bytes": "Filesystem free space in bytes.",
    "avail_bytes": "Filesystem space available to non-root users in bytes.",
    "files": "Filesystem total file nodes.",
    "files_free": "Filesystem total free file nodes.",
    "readonly": "Filesystem read-only status.",
    "device_error": "Whether an error occurred while getting statistics for the given device.",
}


def select_mounts(partitions: Sequence, mount_exclude: str, fstype_exclude: str) -> list:
    """The partitions to report: not excluded by pattern, one entry per mount point."""
    mount_re, fstype_re = re.compile(mount_exclude), re.compile(fstype_exclude)
    seen: set[str] = set()
    chosen = []
    for part in partitions:
        if (part.mountpoint in seen or mount_re.search(part.mountpoint)
                or fstype_re.search(part.fstype)):
            continue
        seen.add(part.mountpoint)
        chosen.append(part)
    return chosen


def parse_filesystems(mounts: Sequence[tuple]) -> list[Metric]:
    """Families from (partition, statvfs result or None on error) pairs."""
    families = {key: GaugeMetricFamily(f"node_filesystem_{key}", text, labels=LABELS)
                for key, text in GAUGES.items()}
    for part, st in mounts:
        labels = [part.device, part.fstype, part.mountpoint]
        readonly = 1.0 if "ro" in part.opts.split(",") else 0.0
        families["device_error"].add_metric(labels, 0.0 if st is not None else 1.0)
        families["readonly"].add_metric(labels, readonly)
        if st is None:
            continue
        families["size_bytes"].add_metric(labels, st.f_blocks * st.f_frsize)
        families["free_bytes"].add_metric(labels, st.f_bfree * st.f_frsize)
        families["avail_bytes"].add_metric(labels, st.f_bavail * st.f_frsize)
        families["files"].add_metric(labels, st.f_files)
        families["files_free"].add_metric(labels, st.f_ffree)
    return list(families.values())


class FilesystemCollector:
    """node_filesystem_*{device,fstype,mountpoint} from psutil partitions and statvfs."""

    def __init__(self, psutil, statvfs: Callable, settings=None):
        self.psutil = psutil
        self.statvfs = statvfs
        settings = settings or {}
        self.mount_exclude = settings.get("mount_points_exclude", DEFAULT_MOUNT_POINTS_EXCLUDE)
        self.fstype_exclude = settings.get("fs_types_exclude", DEFAULT_FS_TYPES_EXCLUDE)

    def collect(self) -> Iterator[Metric]:
        """Read the mount table, stat each kept mount, parse."""
        mounts = []
        for part in select_mounts(self.psutil.disk_partitions(all=True), self.mount_exclude,
                                  self.fstype_exclude):
            try:
                st = self.statvfs(part.mountpoint)
            except OSError as exc:
                log.debug("statvfs %s: %s", part.mountpoint, exc)
                st = None
            mounts.append((part, st))
        yield from parse_filesystems(mounts)
