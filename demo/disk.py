"""The disk-filling scenario: a small filesystem of its own that the demo fills and empties.

Filling the real disk would take gigabytes and endanger the machine, so the demo
makes a small ext4 filesystem in an image file in the data directory and
loop-mounts it at ``<data_dir>/demo/disk`` (needs root and `mount`, as `make run`
on a fresh Debian machine has; node_exporter and our infrastructure exporter see
it as any other disk, `/dev/loopN`). While `disk-filling` is active a file grows
there at a steady rate, so `predict_linear` on its free space crosses zero within
hours and NodeFilesystemFillingUp fires; `normal` deletes the file. Without root
the directory is a plain one on the data disk and the file is capped at the same
size, which shows the writes but cannot make the alert fire on a large disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("demo.disk")
CHUNK = 64 * 1024
HEADROOM = 1 << 20


class DiskFiller:
    """Owns the demo filesystem and the file that fills it."""

    def __init__(self, data_dir: str | Path, size_mb: int = 64, fill_seconds: float = 240.0):
        self.root = Path(data_dir) / "demo"
        self.mountpoint = self.root / "disk"
        self.image = self.root / "disk.img"
        self.size = size_mb << 20
        self.rate = self.size / fill_seconds
        self.mounted_here = False
        self.mode = "none"
        self._budget = 0.0

    @property
    def fill_file(self) -> Path:
        """The file that grows while the scenario is active."""
        return self.mountpoint / "fill.bin"

    def prepare(self) -> str:
        """Mount the small filesystem (or fall back to a directory); return the mode."""
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(self.mountpoint):
            self.mode = "loop"
            return self.mode
        if os.geteuid() == 0 and shutil.which("mount") and shutil.which("mkfs.ext4"):
            try:
                if not self.image.exists() or self.image.stat().st_size != self.size:
                    with open(self.image, "wb") as fh:
                        fh.truncate(self.size)
                    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)],
                                   check=True, capture_output=True, timeout=60)
                subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
                               check=True, capture_output=True, timeout=60)
                self.mounted_here = True
                self.mode = "loop"
                log.info("disk-filling: %d MB filesystem mounted at %s", self.size >> 20,
                         self.mountpoint)
                return self.mode
            except (OSError, subprocess.SubprocessError) as exc:
                err = getattr(exc, "stderr", b"") or b""
                log.warning("disk-filling: cannot loop-mount (%s %s); using a plain directory",
                            exc, err.decode(errors="replace").strip())
        self.mode = "directory"
        return self.mode

    def free_bytes(self) -> int:
        """Free space where the file grows."""
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def step(self, seconds: float) -> int:
        """Write what `seconds` of filling allow (until 1 MB is left); return bytes written."""
        if self.mode == "none":
            return 0
        self._budget += self.rate * seconds
        size = self.fill_file.stat().st_size if self.fill_file.exists() else 0
        room = self.free_bytes() - HEADROOM
        if self.mode == "directory":
            room = min(room, self.size - HEADROOM - size)
        todo = int(min(self._budget, max(room, 0)))
        if todo <= 0:
            self._budget = min(self._budget, float(self.rate))
            return 0
        written = 0
        with open(self.fill_file, "ab") as fh:
            while written < todo:
                n = min(CHUNK, todo - written)
                fh.write(b"\0" * n)
                written += n
            fh.flush()
            os.fsync(fh.fileno())
        self._budget -= written
        return written

    def clear(self) -> None:
        """Delete the fill file (scenario `normal`)."""
        self._budget = 0.0
        try:
            self.fill_file.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Delete the file and unmount what prepare() mounted."""
        if self.mode == "none":
            return
        self.clear()
        if self.mounted_here:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True,
                           timeout=30)
            self.mounted_here = False
        self.mode = "none"
