"""The audit log: append-only JSON lines, each record chained to the one before by hash.

Every record carries `prev` (the hash of the record before it, GENESIS for the first) and
`hash` (SHA-256 of `prev` and the record's canonical JSON without `hash`), so a record that
is changed, removed or moved breaks the chain where it happened; `verify` finds the first
break (`pulse audit verify`). One writer per log: the lock serialises appends in the process
that owns the file (the bridge). The chain is not keyed: it makes edits evident, it does not
stop someone who rewrites every later record, nor notice the newest records cut off.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64


def record_hash(entry: dict) -> str:
    """The hash a record carries: SHA-256 over its canonical JSON without `hash`."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSON lines: who, role, method, path, outcome, time. Never a
    token."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._last = self._tail()

    def _tail(self) -> str:
        """The hash to chain the next record to; a line torn by a kill mid-write is cut off
        first (it was never a whole record), so the chain goes on from the last whole one."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return GENESIS
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
            data = data[:keep]
        for line in reversed(data.splitlines()):
            try:
                return json.loads(line).get("hash") or GENESIS
            except ValueError:
                break
        return GENESIS

    def append(self, entry: dict) -> None:
        """Chain one entry to the last, write it and flush it to the OS."""
        with self._lock:
            entry = {**entry, "prev": self._last}
            entry["hash"] = record_hash(entry)
            with open(self.path, "a") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
            self._last = entry["hash"]

    def read(self, limit: int = 100, **filters) -> list[dict]:
        """The newest entries matching filters, newest first.

        filters: who, role, method, outcome (exact), path (prefix), since (ISO time, inclusive).
        """
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        since = filters.pop("since", None)
        prefix = filters.pop("path", None)
        out = []
        for line in reversed(lines):
            if len(out) >= limit:
                break
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill mid-write is skipped, not fatal
            if since and entry.get("time", "") < since:
                continue
            if prefix and not entry.get("path", "").startswith(prefix):
                continue
            if all(entry.get(k) == v for k, v in filters.items() if v is not None):
                out.append(entry)
        return out


@dataclass(frozen=True)
class Break:
    """Where the chain breaks: the 1-based line and what is wrong there."""

    line: int
    problem: str


def verify(path: Path) -> tuple[int, Break | None]:
    """Walk the chain of an audit log: (records checked, the first break or None)."""
    prev, count = GENESIS, 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                entry = json.loads(raw)
            except ValueError:
                return count, Break(number, "not a JSON record (changed or torn)")
            if not isinstance(entry, dict) or "hash" not in entry or "prev" not in entry:
                return count, Break(number, "a record without its chain fields (prev, hash)")
            if entry["hash"] != record_hash(entry):
                return count, Break(number, "the record was changed (its hash does not match)")
            if entry["prev"] != prev:
                return count, Break(number, "the record before it was removed, reordered or "
                                    "changed (prev does not match)")
            prev, count = entry["hash"], count + 1
    return count, None


def audit_log_path(data_dir: str | os.PathLike) -> Path:
    """Where the audit log of a data directory is."""
    return Path(data_dir) / "audit" / "audit.log"
