"""Group commit: one writer thread commits everything queued since its last commit at once.

The event log (one fdatasync per group, `exporters.events.store`) and the profile store (one
SQLite transaction per group, `exporters.events.profiles`) both answer a request only once
its change is durable; under load, concurrent requests share one commit instead of queueing
for one each.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class GroupClosed(Exception):
    """The writer is shutting down: the item was not queued."""


class _Waiter:
    __slots__ = ("item", "done", "outcome", "planned", "announced")

    def __init__(self, item, early: bool):
        self.item = item
        self.done = threading.Event()
        self.outcome = None
        # Set when the writer announced this item's result before making it durable (or,
        # failing that, when it is done): only for a submit with `early`.
        self.planned = threading.Event() if early else None
        self.announced = _NOTHING


_NOTHING = object()


class GroupCommit(Generic[T, R]):
    """A writer thread calling `commit(items) -> outcomes` on every group of queued items.

    `commit` returns one outcome per item, in order: a result, or an exception for an item
    that failed alone. If it raises, every item of the group fails with that exception.

    With `announce=True`, `commit(items, announce)` may call `announce(results)` once, before
    its slow part (the fsync), with what each item's result will be if the group becomes
    durable: a submitter's `early` callback then runs in its own thread at the same time as
    the writer's fsync, instead of after it.
    """

    def __init__(self, commit: Callable[..., list[R | Exception]], name: str,
                 announce: bool = False):
        self._commit = commit
        self._announce = announce
        self.name = name
        self._pending: list[_Waiter] = []
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T, timeout: float, early: Callable[[R], None] | None = None) -> R:
        """Queue an item and wait for its group's commit: its result, or raise its failure.

        early(result), when given, is called in this thread with the announced result while
        the writer makes it durable (never when the group failed before announcing it); the
        item may still fail after it (then this raises as usual)."""
        return self.wait(self.enqueue(item, early is not None), timeout, early)

    def enqueue(self, item: T, early: bool = False) -> _Waiter:
        """Queue an item without waiting; `wait` for it later (do something else meanwhile)."""
        waiter = _Waiter(item, early)
        with self._cv:
            if self._closing:
                raise GroupClosed(f"{self.name} is shutting down")
            self._pending.append(waiter)
            self._cv.notify()
        return waiter

    def wait(self, waiter: _Waiter, timeout: float,
             early: Callable[[R], None] | None = None) -> R:
        """Wait for an enqueued item's commit (see `submit`): its result, or raise its failure."""
        deadline = time.monotonic() + timeout
        if early is not None:
            if not waiter.planned.wait(timeout):
                raise TimeoutError(f"{self.name} did not commit within {timeout}s")
            if waiter.announced is not _NOTHING:
                early(waiter.announced)
        if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
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
            items = [w.item for w in group]
            try:
                if self._announce:
                    outcomes = self._commit(items, functools.partial(_announce, group))
                else:
                    outcomes = self._commit(items)
            except Exception as exc:  # noqa: BLE001 - every waiter must learn it failed
                log.error("%s: commit of %d items failed: %s", self.name, len(group), exc)
                outcomes = [exc] * len(group)
            for waiter, outcome in zip(group, outcomes, strict=True):
                waiter.outcome = outcome
                waiter.done.set()
                if waiter.planned is not None:
                    waiter.planned.set()  # wakes an early waiter the announcement did not

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)


def _announce(group: list[_Waiter], results: list) -> None:
    """Hand each early waiter its coming result (exceptions are not announced)."""
    for waiter, result in zip(group, results, strict=True):
        if waiter.planned is not None and not isinstance(result, Exception):
            waiter.announced = result
            waiter.planned.set()
