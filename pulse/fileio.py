"""Crash-safe file writes: the one way Pulse replaces a file.

A file is written under a temporary name beside its destination, fsynced and
swapped in with `os.replace`, so a reader (or a restart after kill -9) sees the
old content or the new, never a torn file.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: Path) -> Path:
    """The temporary name beside path that a replacement is written to first."""
    return path.with_name(f".{path.name}.tmp")


def write_temp(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write data (fsynced, with mode) to the temporary name beside path; return that name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    return tmp


def replace(tmp: Path, path: Path, sync_dir: bool = False) -> None:
    """Swap a written temporary file in at path (sync_dir: make the rename itself durable)."""
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(Path(path).parent)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644,
                 sync_dir: bool = False) -> None:
    """Write to a temporary name beside path, fsync, and swap it in."""
    replace(write_temp(path, data, mode), path, sync_dir)


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename or unlink in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def file_lock(path: Path):
    """Hold an exclusive fcntl lock on path (created if missing) against other processes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
