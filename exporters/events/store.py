"""The durable record of the intake: the write-ahead log, the metric state, one writer.

Every accepted batch becomes one log record holding what it changed (counter increments,
histogram observations, the hashes of its event ids, its response, its dead letters). A
request is answered only after its record is written and fdatasync'ed; concurrent requests
share one fsync (group commit, `exporters.events.groupcommit`). Start-up loads the last
snapshot and replays the log tail (`exporters.events.wal`) into the state
(`exporters.events.state`), so the counters equal exactly what was acknowledged and retries
are never counted twice.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from exporters.events.groupcommit import GroupClosed, GroupCommit
from exporters.events.mapping import MetricDef
from exporters.events.state import (
    REJECT_REASONS,
    SELF_METRICS,
    Batch,
    Committed,
    MetricState,
)
from exporters.events.wal import EventLog, LogError

log = logging.getLogger(__name__)
__all__ = ["REJECT_REASONS", "SELF_METRICS", "Batch", "Committed", "EventStore", "NoRoom",
           "StoreError"]


class StoreError(Exception):
    """The durable record could not be written: nothing was acknowledged."""


class NoRoom(StoreError):
    """Backpressure: the log's disk is under its free-space floor or the commit queue is at its
    bound. Nothing was queued; the client should retry after `retry_after` seconds (the
    retry_after_disk_full / retry_after_queue_full keys)."""

    def __init__(self, reason: str, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


class EventStore:
    """The intake's durable state; `commit(batch)` returns only once it is on disk."""

    def __init__(self, directory: Path, metrics: dict[str, MetricDef], *,
                 batch_window_seconds: float = 86400.0, max_batches: int = 100_000,
                 event_id_window: int = 500_000, dead_letter_max: int = 1000,
                 checkpoint_bytes: int = 8 << 20, free_space_floor: int = 0,
                 max_commit_queue: int = 0, retry_after_disk_full: float = 5.0,
                 retry_after_queue_full: float = 1.0):
        self.directory = Path(directory)
        self.free_space_floor = free_space_floor
        self.max_commit_queue = max_commit_queue
        self.retry_after = {"disk_full": retry_after_disk_full,
                            "queue_full": retry_after_queue_full}
        self.state = MetricState(metrics, batch_window_seconds=batch_window_seconds,
                                 max_batches=max_batches, event_id_window=event_id_window,
                                 dead_letter_max=dead_letter_max)
        try:
            self.log = EventLog(directory, checkpoint_bytes)
        except LogError as exc:
            raise StoreError(str(exc)) from None
        records = self.log.restore(self.state.load_snapshot, self.state.apply)
        log.info("restored %d log records (%d dead letters, %d batch ids)", records,
                 len(self.state.dead_letters), len(self.state.batches))
        self.dead_letters = self.state.dead_letters
        # Held while a snapshot is being written (one at a time, beside the writer).
        self._checkpointing = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._writer = GroupCommit(self.commit_group, "events-wal")

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer may still use on the log's filesystem."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def check_room(self) -> None:
        """Raise NoRoom when a batch now would wait behind too many (queue_full).

        The disk's floor is checked by the writer, once per group (`check_disk`): statvfs in
        every request thread, stalled behind the writer's fdatasync on the same filesystem,
        cost ~10 % of the intake's time under load."""
        if self.max_commit_queue and self._writer.queued() >= self.max_commit_queue:
            raise NoRoom("queue_full", f"{self._writer.queued()} batches are waiting for the "
                         f"log (max_commit_queue={self.max_commit_queue}); retry later",
                         self.retry_after["queue_full"])

    def check_disk(self) -> None:
        """Raise NoRoom (disk_full) when the log's disk is under its free-space floor."""
        if not self.free_space_floor:
            return
        try:
            free = self.free_bytes()
        except OSError as exc:
            raise NoRoom("disk_full", f"the log's disk cannot be examined: {exc}",
                         self.retry_after["disk_full"]) from None
        if free < self.free_space_floor:
            raise NoRoom("disk_full", f"the log's disk has {free} bytes free, under "
                         f"free_space_floor={self.free_space_floor}; retry later",
                         self.retry_after["disk_full"])

    def commit(self, batch: Batch, events: list[dict] = (), timeout: float = 60.0) -> Committed:
        """Queue a batch and wait until it is durable (or known to be a retry); NoRoom when
        the queue is at its bound (nothing queued then) or the disk under its floor (nothing
        written).

        `events` (the accepted raw events) is what the JetStream log partitions by; the
        local log's records carry the batch alone."""
        self.check_room()
        try:
            return self._writer.submit(batch, timeout)
        except GroupClosed:
            raise StoreError("the intake is shutting down") from None
        except TimeoutError:
            raise StoreError("the durable log did not answer in time") from None
        except StoreError:
            raise  # NoRoom from the writer's disk check: backpressure, nothing written
        except Exception as exc:  # noqa: BLE001 - whatever failed, nothing was acknowledged
            raise StoreError(str(exc)) from exc

    def commit_group(self, group: list[Batch]) -> list[Committed | Exception]:
        """The writer's step: plan the group, write its records with one fsync, apply them
        (or refuse the whole group, writing nothing, when the disk is under its floor)."""
        try:
            self.check_disk()
        except NoRoom as exc:
            return [exc] * len(group)
        planned = self.state.plan(group)
        data = b"".join(p.framed for p in planned)
        if data:
            self.log.append(data)
        with self.state.lock:
            for p in planned:
                if p.record is not None:
                    self.state.apply(p.record, p.outcome.body)
        if self.log.full and self._checkpointing.acquire(blocking=False):
            try:
                segment = self.log.rotate()
                state = self.state.snapshot()
            except OSError as exc:  # the group is durable already; the next one retries
                self._checkpointing.release()
                log.error("checkpoint failed: %s", exc)
            else:
                # Serialising and fsyncing the snapshot (~0.1 s at a full id window) stalled
                # every request behind the writer: it is written beside it instead.
                self._checkpointer = threading.Thread(
                    target=self._write_checkpoint, args=(state, segment),
                    name="events-checkpoint", daemon=True)
                self._checkpointer.start()
        return [p.outcome for p in planned]

    def _write_checkpoint(self, state: dict, segment: int) -> None:
        try:
            self.log.write_snapshot(state, segment)
            self.log.prepare_next()
        except OSError as exc:  # the old segments stay: the next checkpoint retries
            log.error("checkpoint failed: %s", exc)
        finally:
            self._checkpointing.release()

    def checkpoint(self) -> None:
        """Snapshot the whole state, start a new log segment, drop the old ones (now)."""
        with self._checkpointing:
            self.log.checkpoint(self.state.snapshot())

    def close(self) -> None:
        """Finish pending commits, stop the writer, release the log."""
        self._writer.close()
        if self._checkpointer is not None:
            self._checkpointer.join(60)
        self.log.close()

    # ---- reading ----------------------------------------------------------------------------

    def read_metrics(self):
        """A consistent copy of every counter and histogram series."""
        return self.state.read_metrics()

    def rejected(self, limit: int) -> list[dict]:
        """The most recent dead letters, newest first."""
        return self.state.rejected(limit)

    def counter_value(self, name: str, labels: tuple = ()) -> float:
        """One counter series' current value (0 when absent)."""
        return self.state.counter_value(name, labels)
