"""The intake's write-ahead log: segments of framed records, snapshots, replay at start-up.

Files in <data_dir>/events/: `snapshot.json` (atomic replace) and `log-<segment>.wal`
(frames of `<len u32><crc32 u32><orjson payload>`, the segment preallocated with zeros; a zero
length ends it). A torn frame at the tail (a crash in the middle of a write that was never
acknowledged) is cleared at start-up. What a record means is `exporters.events.state`'s
business; this module only keeps records and snapshots durable.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson

from pulse.fileio import fsync_dir, write_atomic

log = logging.getLogger(__name__)

FRAME = struct.Struct("<II")
SEGMENT_SLACK = 1 << 20  # a segment is preallocated to checkpoint_bytes plus this
SNAPSHOT = "snapshot.json"
SPARE = "next-segment.tmp"  # the next segment, preallocated ahead (not a log-*.wal: not replayed)


class LogError(Exception):
    """The log cannot be used (e.g. another process holds it)."""


def frame(payload: bytes) -> bytes:
    """One record as written to a segment: length, CRC-32, payload."""
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class EventLog:
    """The segments and snapshot of one directory, held by this process alone."""

    def __init__(self, directory: Path, checkpoint_bytes: int = 8 << 20):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_bytes = checkpoint_bytes
        self._lockfile = self._take_lock()
        self.segment = 0
        self._fd = -1
        self.size = 0  # where the next record of the current segment goes

    def _take_lock(self):
        handle = open(self.dir / "LOCK", "a+")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise LogError(f"{self.dir} is in use by another intake process") from None
        return handle

    def _segments(self) -> list[tuple[int, Path]]:
        out = []
        for path in self.dir.glob("log-*.wal"):
            try:
                out.append((int(path.stem.split("-", 1)[1]), path))
            except ValueError:
                continue
        return sorted(out)

    # ---- start-up ---------------------------------------------------------------------------

    def restore(self, load_snapshot: Callable[[dict], None],
                apply: Callable[[dict], None]) -> int:
        """Feed the last snapshot and then every whole record after it; return the records."""
        started = time.monotonic()
        snap_path = self.dir / SNAPSHOT
        first = 0
        if snap_path.exists():
            snap = orjson.loads(snap_path.read_bytes())
            load_snapshot(snap)
            first = snap["segment"]
        ends: dict[int, int] = {}
        records = 0
        for seq, path in self._segments():
            if seq < first:
                path.unlink(missing_ok=True)  # already folded into the snapshot
                continue
            ends[seq], count = self._replay(path, apply)
            records += count
        last = max([first, *ends])
        self._open_segment(last, ends.get(last, 0))
        log.info("replayed %d log records in %.2fs", records, time.monotonic() - started)
        return records

    def _replay(self, path: Path, apply: Callable[[dict], None]) -> tuple[int, int]:
        """Apply every whole record of a segment; return where the next one goes and how many."""
        data = path.read_bytes()
        pos = count = 0
        while pos + FRAME.size <= len(data):
            length, crc = FRAME.unpack_from(data, pos)
            if length == 0:
                break  # the zero-filled, preallocated rest of the segment
            payload = data[pos + FRAME.size:pos + FRAME.size + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            apply(orjson.loads(payload))
            count += 1
            pos += FRAME.size + length
        garbage = len(data[pos:].rstrip(b"\0"))
        if garbage:
            log.warning("%s: clearing a torn record at byte %d (never acknowledged)",
                        path.name, pos)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, bytes(garbage), pos)
                os.fsync(fd)
            finally:
                os.close(fd)
        return pos, count

    def _open_segment(self, seq: int, position: int = 0) -> None:
        """Write records at `position` of segment seq, preallocating a new segment with zeros.

        Overwriting blocks that already exist lets fdatasync skip the file-size metadata
        update (the journal commit) that appending needs: about three times faster here.
        """
        path = self.dir / f"log-{seq:08d}.wal"
        spare = self.dir / SPARE
        if not path.exists() and spare.exists():
            os.replace(spare, path)  # made ahead by `prepare_next`: zeros, already fsynced
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size < self.checkpoint_bytes + SEGMENT_SLACK:
            self._zero_fill(fd, size)
            os.fsync(fd)
        fsync_dir(self.dir)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self.segment = seq
        self.size = position

    def _zero_fill(self, fd: int, size: int) -> None:
        """Write zeros from `size` up to a segment's preallocated length."""
        chunk = bytes(1 << 20)
        for start in range(size, self.checkpoint_bytes + SEGMENT_SLACK, len(chunk)):
            os.pwrite(fd, chunk, start)

    # ---- writing ----------------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Write framed records at the end of the segment and fdatasync them."""
        start = self.size
        try:
            view, at = memoryview(data), start
            while view:
                written = os.pwrite(self._fd, view, at)
                view, at = view[written:], at + written
            os.fdatasync(self._fd)
        except OSError:
            try:  # an unacknowledged partial record must not be replayed
                os.pwrite(self._fd, bytes(len(data)), start)
            except OSError:
                pass
            raise
        self.size = start + len(data)

    @property
    def full(self) -> bool:
        """True when the segment has reached checkpoint_bytes (time for a snapshot)."""
        return self.size >= self.checkpoint_bytes

    def checkpoint(self, state: dict) -> None:
        """Snapshot the whole state, start a new log segment, drop the old ones."""
        self.write_snapshot(state, self.rotate())

    def rotate(self) -> int:
        """Send new records to a new segment; returns its number (what the snapshot of the
        state as it is now must name)."""
        next_seq = self.segment + 1
        self._open_segment(next_seq)
        return next_seq

    def write_snapshot(self, state: dict, segment: int) -> None:
        """Write the snapshot of the state up to `segment` (from `rotate`), then drop the
        segments before it. Until the snapshot is durable the old segments stay, so a crash
        in between replays them from the previous snapshot: nothing is lost either way."""
        data = orjson.dumps({"version": 1, "segment": segment, "written": time.time(), **state})
        write_atomic(self.dir / SNAPSHOT, data, mode=0o600, sync_dir=True)
        for seq, path in self._segments():
            if seq < segment:
                path.unlink(missing_ok=True)
        log.info("checkpoint: snapshot of %d bytes, log segment %d", len(data), segment)

    def prepare_next(self) -> None:
        """Preallocate the next segment (zeros, fsynced), so `rotate` does not wait for it."""
        fd = os.open(self.dir / SPARE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            self._zero_fill(fd, os.fstat(fd).st_size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the segment and release the directory."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lockfile.close()
