"""Group commit: one writer thread commits everything queued since its last commit at once.

The event log (one fdatasync per group, `exporters.events.store`) and the profile store (one
SQLite transaction per group, `exporters.events.profiles`) both answer a request only once
its change is durable; under load, concurrent requests share one commit instead of queueing
for one each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class GroupClosed(Exception):
    """The writer is shutting down: the item was not queued."""


class _Waiter:
    __slots__ = ("item", "done", "outcome")

    def __init__(self, item):
        self.item = item
        self.done = threading.Event()
        self.outcome = None


class GroupCommit(Generic[T, R]):
    """A writer thread calling `commit(items) -> outcomes` on every group of queued items.

    `commit` returns one outcome per item, in order: a result, or an exception for an item
    that failed alone. If it raises, every item of the group fails with that exception.
    """

    def __init__(self, commit: Callable[[list[T]], list[R | Exception]], name: str):
        self._commit = commit
        self.name = name
        self._pending: list[_Waiter] = []
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T, timeout: float) -> R:
        """Queue an item and wait for its group's commit: its result, or raise its failure."""
        return self.wait(self.enqueue(item), timeout)

    def enqueue(self, item: T) -> _Waiter:
        """Queue an item without waiting; `wait` for it later (do something else meanwhile)."""
        waiter = _Waiter(item)
        with self._cv:
            if self._closing:
                raise GroupClosed(f"{self.name} is shutting down")
            self._pending.append(waiter)
            self._cv.notify()
        return waiter

    def wait(self, waiter: _Waiter, timeout: float) -> R:
        """Wait for an enqueued item's commit: its result, or raise its failure."""
        if not waiter.done.wait(timeout):
            raise TimeoutError(f"{self.name} did not commit within {timeout}s")
        if isinstance(waiter.outcome, Exception):
            raise waiter.outcome
        return waiter.outcome

    def queued(self) -> int:
        """Items waiting for the next commit (the one being committed not included)."""
        return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            try:
                outcomes = self._commit([w.item for w in group])
            except Exception as exc:  # noqa: BLE001 - every waiter must learn it failed
                log.error("%s: commit of %d items failed: %s", self.name, len(group), exc)
                outcomes = [exc] * len(group)
            for waiter, outcome in zip(group, outcomes, strict=True):
                waiter.outcome = outcome
                waiter.done.set()

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

