"""The group-commit writer: queue now, wait later."""

from __future__ import annotations

import threading

from exporters.events.groupcommit import GroupCommit


def test_enqueue_then_wait_shares_one_commit():
    gate = threading.Event()
    groups = []

    def commit(items):
        gate.wait(10)
        groups.append(list(items))
        return [i * 10 for i in items]

    writer = GroupCommit(commit, "test-writer")
    try:
        first = writer.enqueue(1)
        second, third = writer.enqueue(2), writer.enqueue(3)
        gate.set()
        assert [writer.wait(w, 10) for w in (first, second, third)] == [10, 20, 30]
        assert sum(len(g) for g in groups) == 3
    finally:
        writer.close()
