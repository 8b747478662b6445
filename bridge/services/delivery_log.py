"""Delivery state in the data dir: which targets got which notification, and the history.

At-least-once without duplicates. A notification is identified by its key
(groupKey + status + the alerts' fingerprints and start times). While it is
partly delivered, the targets that succeeded are remembered, so Alertmanager's
retry (the webhook answered 5xx) only goes to the ones that failed. Once every
target succeeded it is marked done; an identical notification within
`replay_window` is a retry after a lost answer and is not sent again, a later
one is Alertmanager's repeat and is delivered.

Across Alertmanager peers: each peer of a cluster sends its own webhook, and
a peer whose view is a little behind can send a firing after another peer's
resolve, or the resolve again. So the log also remembers, per group (receiver
+ groupKey), which alerts (fingerprint@startsAt) went out firing and resolved:
an alert already delivered resolved is stale when it comes back firing (left
out), and a notification that brings nothing new (every alert already
delivered resolved, or firing within replay_window) is a duplicate.

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


def alert_id(alert: Mapping) -> str:
    """One occurrence of one alert: its fingerprint and start time."""
    return f"{alert.get('fingerprint', '')}@{alert.get('startsAt', '')}"


def group_id(payload: Mapping) -> str:
    """A notification's group as the delivery log knows it: receiver and groupKey."""
    text = f"{payload.get('receiver', '')}\n{payload.get('groupKey', '')}"
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
        # group -> alert id -> (status delivered last, when)
        self._groups: dict[str, dict[str, tuple[str, float]]] = {}
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
        if rec.get("g"):
            alerts = self._groups.setdefault(rec["g"], {})
            for aid, status in (rec.get("a") or {}).items():
                alerts[aid] = (status, t)
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
        for group, alerts in list(self._groups.items()):
            for aid in [a for a, (_, t) in alerts.items() if now - t > self.pending_ttl]:
                del alerts[aid]
            if not alerts:
                del self._groups[group]

    def _compact(self) -> None:
        with self._lock:
            self._expire(time.time())
            lines = [json.dumps({"k": k, "done": True, "t": t}) for k, t in self._done.items()]
            lines += [json.dumps({"k": k, "target": tid, "t": t})
                      for k, sent in self._sent.items() for tid, t in sent.items()]
            lines += [json.dumps({"g": g, "a": {aid: status}, "t": t})
                      for g, alerts in self._groups.items()
                      for aid, (status, t) in alerts.items()]
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

    def sort_alerts(self, group: str, alerts: Iterable[Mapping],
                    now: float | None = None) -> tuple[list[Mapping], bool]:
        """(the alerts minus stale firings, whether any of them is news to the group).

        Stale: firing, but already delivered resolved (a lagging peer). News: not
        delivered with this status before (a firing: not within replay_window, so
        Alertmanager's repeats are news and another peer's copy is not).
        """
        now = time.time() if now is None else now
        with self._lock:
            known = dict(self._groups.get(group, {}))
        kept, news = [], False
        for alert in alerts:
            status = alert.get("status")
            last = known.get(alert_id(alert))
            if last and last[0] == "resolved":
                if status == "firing":
                    continue
            elif not last or last[0] != status or (
                    status == "firing" and now - last[1] > self.replay_window):
                news = True
            kept.append(alert)
        return kept, news

    def paged(self, group: str) -> bool:
        """True when a firing of this group was delivered before (the incident is open)."""
        with self._lock:
            return any(s == "firing" for s, _ in self._groups.get(group, {}).values())

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

    def record_done(self, key: str, group: str | None = None,
                    alerts: Iterable[Mapping] = ()) -> None:
        """Every target got it: forget the per-target state, remember it for replay_window,
        and the status each of the group's alerts was delivered with (one fsynced line)."""
        now = time.time()
        statuses = {alert_id(a): a.get("status", "") for a in alerts}
        with self._lock:
            rec: dict = {"k": key, "done": True, "t": now}
            if group:
                rec.update(g=group, a=statuses)
                mine = self._groups.setdefault(group, {})
                for aid, status in statuses.items():
                    mine[aid] = (status, now)
            self._append(rec)
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
