"""The audit log: append-only JSON lines, each record chained to the one before by hash.

Every record carries `prev` (the hash of the record before it, GENESIS for the first) and
`hash` (SHA-256 of `prev` and the record's canonical JSON without `hash`), so a record that
is changed, removed or moved breaks the chain where it happened; `verify` finds the first
break (`pulse audit verify`). Every Pulse process of a data dir (bridge, intake, aggregators,
AI exporter, integrations) appends to the one log: each append holds an exclusive flock
while it reads the last record's hash from the file's tail, writes and flushes, so two
processes chain correctly one after the other. The chain is not keyed: it makes edits
evident, it does not stop someone who rewrites every later record, nor notice the newest
records cut off.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

GENESIS = "0" * 64


def record_hash(entry: dict) -> str:
    """The hash a record carries: SHA-256 over its canonical JSON without `hash`."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSON lines: who, role, method, route, outcome, time. Never a
    token. Safe to share between processes (an exclusive flock per append)."""

    # How far back from the end a tail read looks at a time for the last whole line.
    _CHUNK = 8192

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # flock already excludes other open files, in this process too; the thread lock
        # keeps this process's threads from each taking a descriptor to wait on the kernel.
        self._lock = threading.Lock()

    @classmethod
    def _tail(cls, fh) -> str:
        """The hash to chain the next record to, read under the lock from the file's end; a
        line torn by a kill mid-write is cut off first (it was never a whole record, and its
        writer, dead, no longer holds the lock), so the chain goes on from the last whole one."""
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return GENESIS
        fh.seek(size - 1)
        if fh.read(1) != b"\n":
            size = cls._last_newline(fh, size) + 1
            fh.truncate(size)
            if size == 0:
                return GENESIS
        # The last whole line ends at size - 1; find where it starts.
        start = cls._last_newline(fh, size - 1) + 1
        fh.seek(start)
        try:
            return json.loads(fh.read(size - start)).get("hash") or GENESIS
        except (ValueError, AttributeError):
            return GENESIS

    @classmethod
    def _last_newline(cls, fh, end: int) -> int:
        """The offset of the last newline before end, or -1."""
        pos = end
        while pos > 0:
            step = min(cls._CHUNK, pos)
            fh.seek(pos - step)
            found = fh.read(step).rfind(b"\n")
            if found >= 0:
                return pos - step + found
            pos -= step
        return -1

    def append(self, entry: dict) -> dict:
        """Chain one entry to the last record in the file, write it and flush it to the OS,
        all under an exclusive flock; return the record written."""
        with self._lock, open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                entry = {**entry, "prev": self._tail(fh)}
                entry["hash"] = record_hash(entry)
                fh.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entry

    def read(self, limit: int = 100, **filters) -> list[dict]:
        """The newest entries matching filters, newest first.

        filters: who, role, method, outcome, process (exact), path (prefix of the path or of
        the route template), since (ISO time, inclusive).
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
            if prefix and not (entry.get("path") or "").startswith(prefix) and not (
                    entry.get("route") or "").startswith(prefix):
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


def outcome(status: int) -> str:
    """allowed (< 400), refused (401, 403) or error (any other 4xx/5xx)."""
    if status < 400:
        return "allowed"
    return "refused" if status in (401, 403) else "error"


def request_record(process: str, *, who: str, role: str | None, method: str, route: str,
                   path: str, status: int, tenant: str | None = None,
                   permission: str | None = None, cause: str | None = None,
                   grant: str | None = None, reason: str | None = None) -> dict:
    """One request's audit record (the fields every process writes; never a token).

    route is the route template (a path may carry an id; the template is what is guarded);
    cause says why a refusal happened (anonymous, invalid-token, forbidden, a write key's
    code); grant names a token issued at run time by its grant id (never the token); reason
    is a step-up's stated reason, when the request carried one."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
              "process": process, "who": who, "role": role, "tenant": tenant,
              "method": method, "route": route, "path": path, "status": status,
              "outcome": outcome(status)}
    for key, value in (("permission", permission), ("cause", cause), ("grant", grant),
                       ("reason", reason)):
        if value is not None:
            record[key] = value
    return record
