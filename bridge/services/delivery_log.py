"""Delivery state in the data dir: which targets got which notification, and the history.

At-least-once without duplicates. A notification is identified by its key
(groupKey + status + the alerts' fingerprints and start times). While it is
partly delivered, the targets that succeeded are remembered, so Alertmanager's
retry (the webhook answered 5xx) only goes to the ones that failed. Once every
target succeeded it is marked done; an identical notification within
`replay_window` is a retry after a lost answer and is not sent again, a later
one is Alertmanager's repeat and is delivered.

Every change is one appended, fsynced JSON line, so what was acknowledged
survives kill -9; the log is compacted (temp + rename) when it grows.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

from pulse.fileio import write_atomic


def notification_key(payload: Mapping) -> str:
    """The identity of a notification: groupKey, status and its alerts (fingerprint@startsAt)."""
    alerts = sorted(f"{a.get('fingerprint', '')}@{a.get('startsAt', '')}:{a.get('status', '')}"
                    for a in payload.get("alerts") or [])
    text = json.dumps([payload.get("groupKey", ""), payload.get("status", ""),
                       payload.get("receiver", ""), alerts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DeliveryState:
    """Targets that succeeded per notification key, persisted as an append-only log."""

    COMPACT_EVERY = 2000

    def __init__(self, path: Path, replay_window: float = 60.0, pending_ttl: float = 86400.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.replay_window = replay_window
        self.pending_ttl = pending_ttl
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._sent: dict[str, dict[str, float]] = {}   # key -> target id -> time
        self._done: dict[str, float] = {}               # key -> time all succeeded
        self._appended = 0
        self._load()
        self._compact()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash: that write was never acknowledged
            self._apply(rec)

    def _apply(self, rec: dict) -> None:
        key, t = rec.get("k"), float(rec.get("t", 0))
        if not key:
            return
        if rec.get("done"):
            self._done[key] = t
            self._sent.pop(key, None)
        elif rec.get("target"):
            self._sent.setdefault(key, {})[rec["target"]] = t

    def _expire(self, now: float) -> None:
        for key in [k for k, t in self._done.items() if now - t > self.replay_window]:
            del self._done[key]
        for key in [k for k, s in self._sent.items() if now - max(s.values()) > self.pending_ttl]:
            del self._sent[key]

    def _compact(self) -> None:
        with self._lock:
            self._expire(time.time())
            lines = [json.dumps({"k": k, "done": True, "t": t}) for k, t in self._done.items()]
            lines += [json.dumps({"k": k, "target": tid, "t": t})
                      for k, sent in self._sent.items() for tid, t in sent.items()]
            write_atomic(self.path, "".join(line + "\n" for line in lines), mode=0o600)
            self._appended = 0

    def _append(self, rec: dict) -> None:
        line = json.dumps(rec) + "\n"
        with open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._appended += 1

    def lock(self, key: str) -> threading.Lock:
        """A lock per notification key, so a retry never races its original."""
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def recently_done(self, key: str, now: float | None = None) -> bool:
        """True when every target got this notification less than replay_window ago."""
        now = time.time() if now is None else now
        with self._lock:
            t = self._done.get(key)
            return t is not None and now - t <= self.replay_window

    def succeeded(self, key: str) -> set[str]:
        """Target ids that already got this (partly delivered) notification."""
        with self._lock:
            return set(self._sent.get(key, {}))

    def record_success(self, key: str, target: str) -> None:
        """Remember (durably) that target got the notification."""
        now = time.time()
        with self._lock:
            self._append({"k": key, "target": target, "t": now})
            self._sent.setdefault(key, {})[target] = now

    def record_done(self, key: str) -> None:
        """Every target got it: forget the per-target state, remember it for replay_window."""
        now = time.time()
        with self._lock:
            self._append({"k": key, "done": True, "t": now})
            self._done[key] = now
            self._sent.pop(key, None)
            self._key_locks.pop(key, None)
            grow = self._appended >= self.COMPACT_EVERY
        if grow:
            self._compact()


class History:
    """The newest deliveries (JSON lines in the data dir), newest first on read."""

    def __init__(self, path: Path, size: int = 500):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = size
        self._lock = threading.Lock()
        self._items: deque[dict] = deque(maxlen=size)
        try:
            for line in self.path.read_text().splitlines():
                try:
                    self._items.append(json.loads(line))
                except ValueError:
                    continue
        except FileNotFoundError:
            pass
        self._lines = len(self._items)

    def add(self, entries: Iterable[dict]) -> None:
        """Append entries; rewrite the file when it holds twice the kept size."""
        entries = list(entries)
        with self._lock:
            self._items.extend(entries)
            self._lines += len(entries)
            if self._lines > 2 * self.size:
                write_atomic(self.path, "".join(json.dumps(e) + "\n" for e in self._items))
                self._lines = len(self._items)
            else:
                with open(self.path, "a") as fh:
                    fh.write("".join(json.dumps(e) + "\n" for e in entries))

    def recent(self, limit: int = 50) -> list[dict]:
        """The newest entries, newest first."""
        with self._lock:
            return list(reversed(self._items))[:limit]
