"""The group-commit writer: early announcements and queue-then-wait."""

from __future__ import annotations

import threading

import pytest

from exporters.events.groupcommit import GroupCommit


def test_early_runs_in_the_submitter_while_the_writer_is_still_committing():
    durable = threading.Event()
    seen = []

    def commit(items, announce):
        announce([f"planned {i}" for i in items])
        assert durable.wait(10)  # the slow part: the submitter's early callback runs first
        return [f"done {i}" for i in items]

    writer = GroupCommit(commit, "test-writer", announce=True)
    try:
        def early(result):
            seen.append(result)
            durable.set()
        assert writer.submit(1, 10, early) == "done 1"
        assert seen == ["planned 1"]
    finally:
        writer.close()


def test_early_is_not_called_when_the_group_fails_before_announcing():
    def commit(items, announce):
        raise OSError("disk gone")

    writer = GroupCommit(commit, "test-writer", announce=True)
    try:
        called = []
        with pytest.raises(OSError, match="disk gone"):
            writer.submit(1, 10, called.append)
        assert called == []
    finally:
        writer.close()


def test_an_item_may_fail_after_its_announcement():
    def commit(items, announce):
        announce(list(items))
        raise OSError("fsync failed")

    writer = GroupCommit(commit, "test-writer", announce=True)
    try:
        called = []
        with pytest.raises(OSError, match="fsync failed"):
            writer.submit(7, 10, called.append)
        assert called == [7]
    finally:
        writer.close()


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
