"""The rule store: checked, atomic, confirmed rule-file changes with a crash-safe history.

Every change of a rule file goes through `RuleStore.apply`:

1. in-process checks (done by the caller) and, for YAML or PromQL that came
   from outside the compiler, `promtool check rules` on a candidate file;
2. under the rule directory's lock (a thread lock plus an fcntl lock, so
   several bridge processes serialise too): a *pending* history row is
   committed (SQLite, WAL, synchronous=FULL);
3. the file is written to a temporary name, fsynced and swapped in
   (`os.replace`), Prometheus is reloaded, and the change is confirmed in
   `/api/v1/status/runtimeinfo` (reloadConfigSuccess) and `/api/v1/rules`
   (the file's groups are exactly the new ones);
4. the history row becomes *committed*. On any failure the previous file is
   restored, Prometheus reloaded again, the pending row removed, and the error
   (422 or 503, with Prometheus's words) raised.

A SIGKILL anywhere leaves either the old or the new file (never a torn one).
On start, under the same lock, a pending row left by a killed process is
rolled back: its file is restored to the last committed version, so the
history and the files agree again.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram

from bridge.services import RULES
from bridge.services.errors import Refused, ServiceError, Unavailable, from_prom
from pulse.fileio import file_lock, fsync_dir, write_atomic
from pulse.paths import bridge_rules_dir
from pulse.promapi import PromError, PrometheusClient

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    action TEXT NOT NULL,
    who TEXT NOT NULL,
    role TEXT,
    time TEXT NOT NULL,
    name TEXT,
    content TEXT NOT NULL,
    request TEXT,
    meta TEXT,
    diff TEXT NOT NULL,
    writer TEXT,
    PRIMARY KEY (key, version)
);
CREATE INDEX IF NOT EXISTS versions_name ON versions (name);
"""

# One lock per rule directory within a process; the fcntl lock covers other processes.
_DIR_LOCKS: dict[str, threading.Lock] = {}
_DIR_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Version:
    """One committed version of a rule file."""

    key: str
    version: int
    action: str
    who: str
    role: str | None
    time: str
    name: str | None
    content: str
    request: Any
    meta: dict
    diff: str

    @property
    def deleted(self) -> bool:
        """True when this version removed the file."""
        return self.action == "delete"


@dataclass(frozen=True)
class Edit:
    """What one change writes: the file's content (None: delete) and its history row."""

    content: str | None
    action: str
    name: str | None = None
    request: Any = None
    expect_groups: list[str] = field(default_factory=list)


@dataclass
class _Change:
    key: str
    edit: Edit
    who: str
    role: str | None
    meta: dict
    precheck: Callable | None
    build: Callable[[Version | None], Edit] | None
    future: Future = field(default_factory=Future)


@dataclass(eq=False)
class _Staged:
    """One file of a batch: its content before the batch and the batch's changes to it."""

    key: str
    path: Path
    previous: str | None
    old_groups: set[str]
    changes: list[tuple[_Change, Version]]
    version: Version
    edit: Edit


@dataclass
class Replica:
    """One Prometheus the rules are applied to, and the rule version it has confirmed."""

    client: PrometheusClient
    loaded: int | None = None
    error: str | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.client.url


def _row_to_version(row: sqlite3.Row) -> Version:
    return Version(row["key"], row["version"], row["action"], row["who"], row["role"],
                   row["time"], row["name"], row["content"],
                   json.loads(row["request"]) if row["request"] else None,
                   json.loads(row["meta"]) if row["meta"] else {}, row["diff"])


def promtool_check(text: str, workdir: Path, promtool: str | None = None) -> None:
    """Run `promtool check rules` on text; raise Refused with its output on failure."""
    binary = promtool or shutil.which("promtool")
    if binary is None:
        raise Unavailable("promtool is not installed (apt-get install -y prometheus) and this "
                          "rule needs it", code="promtool_missing")
    workdir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="candidate-", suffix=".yml", dir=workdir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        for _ in range(2):
            proc = subprocess.run([binary, "check", "rules", name], capture_output=True,
                                  text=True, timeout=60)
            if proc.returncode >= 0:
                break
            # Killed by a signal (the machine's trouble, not the file's): once more.
            log.warning("promtool check rules died of signal %d", -proc.returncode)
    finally:
        os.unlink(name)
    if proc.returncode != 0:
        out = (proc.stderr + proc.stdout).replace(name, "<candidate>").strip()
        raise Refused("promtool check rules refused the rule file",
                      [{"field": "rules", "problem": out[-2000:]}])


class RuleStore:
    """Rule files in <data_dir>/rules and their history in <data_dir>/bridge/rules.sqlite."""

    def __init__(self, data_dir: str | Path, prometheus: PrometheusClient,
                 registry: CollectorRegistry | None = None, confirm_timeout: float = 15.0,
                 replicas: list[PrometheusClient] | None = None,
                 reconcile_interval: float | None = None):
        """replicas: every Prometheus to apply rules to (default: prometheus alone);
        reconcile_interval: seconds between catch-up rounds for replicas left behind."""
        self.rules_dir = bridge_rules_dir(data_dir)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(data_dir) / "bridge"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.state_dir / "rules.sqlite"
        self.prometheus = prometheus
        self.confirm_timeout = confirm_timeout
        self._lock_path = self.rules_dir / ".lock"
        self._local = threading.local()
        self.replicas = [Replica(c) for c in (replicas or [prometheus])]
        self._pool = ThreadPoolExecutor(max_workers=2 * len(self.replicas) + 1,
                                        thread_name_prefix="rulestore")
        self._queue: list[_Change] = []
        self._queue_cv = threading.Condition()
        self._committer: threading.Thread | None = None
        # Who wrote a pending row: a live writer's rows are in flight, a dead one's are rolled
        # back (the lock is not held while a batch waits for Prometheus).
        self._writer = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        with _DIR_LOCKS_GUARD:
            self._thread_lock = _DIR_LOCKS.setdefault(str(self.rules_dir.resolve()),
                                                      threading.Lock())
        self.reloads = Counter("pulse_bridge_rule_reloads", "Prometheus reloads made by the "
                               "bridge after a rule change, by result (success|failure).",
                               ["result"], registry=registry or CollectorRegistry())
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.batches = Histogram("pulse_bridge_rule_batch_changes", "Rule changes committed "
                                 "together by one reload (group commit).",
                                 buckets=(1, 2, 4, 8, 16, 32, 64),
                                 registry=registry or CollectorRegistry())
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            if "writer" not in {r["name"] for r in db.execute("PRAGMA table_info(versions)")}:
                db.execute("ALTER TABLE versions ADD COLUMN writer TEXT")
        self.recover()
        if reconcile_interval:
            threading.Thread(target=self._reconcile_loop, args=(reconcile_interval,),
                             daemon=True, name="rulestore-reconcile").start()

    # -- storage ---------------------------------------------------------------------------

    @contextmanager
    def _connect(self):
        # One connection per thread, kept open: opening and closing per call costs a WAL
        # checkpoint (and its fsyncs) each time the last connection closes.
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None,
                                 check_same_thread=True)
            db.row_factory = sqlite3.Row
            self._local.db = db
        db.execute("PRAGMA synchronous=FULL")
        try:
            yield db
        finally:
            if db.in_transaction:
                db.rollback()

    @contextmanager
    def locked(self):
        """Hold the rule directory's lock (threads of this process and other processes)."""
        with self._thread_lock, file_lock(self._lock_path):
            yield

    def path_of(self, key: str) -> Path:
        """The rule file of a key."""
        return self.rules_dir / f"{key}.yml"

    def current(self, key: str) -> Version | None:
        """The last committed version of a key (a delete included), or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM versions WHERE key=? AND state='committed' "
                             "ORDER BY version DESC LIMIT 1", (key,)).fetchone()
        return _row_to_version(row) if row else None

    def history(self, key: str) -> list[Version]:
        """Every committed version of a key, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM versions WHERE key=? AND state='committed' "
                              "ORDER BY version", (key,)).fetchall()
        return [_row_to_version(r) for r in rows]

    def version(self, key: str, version: int) -> Version | None:
        """One committed version."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM versions WHERE key=? AND version=? AND "
                             "state='committed'", (key, version)).fetchone()
        return _row_to_version(row) if row else None

    def live(self, prefix: str) -> list[Version]:
        """The current version of every live (not deleted) key starting with prefix."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT v.* FROM versions v JOIN (SELECT key, MAX(version) AS mv FROM versions "
                "WHERE state='committed' AND key LIKE ? ESCAPE '\\' GROUP BY key) m "
                "ON v.key = m.key AND v.version = m.mv WHERE v.action != 'delete' "
                "ORDER BY v.key", (_like_prefix(prefix),)).fetchall()
        return [_row_to_version(r) for r in rows]

    def name_taken(self, name: str, prefix: str, except_key: str | None = None) -> str | None:
        """The key of a live rule with this name under prefix (other than except_key)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT v.key FROM versions v JOIN (SELECT key, MAX(version) AS mv FROM versions "
                "WHERE state IN ('committed', 'pending') AND key LIKE ? ESCAPE '\\' "
                "GROUP BY key) m "
                "ON v.key = m.key AND v.version = m.mv WHERE v.action != 'delete' "
                "AND v.name = ? AND v.key != ? LIMIT 1",
                (_like_prefix(prefix), name, except_key or "")).fetchone()
        return row["key"] if row else None

    # -- applying changes ------------------------------------------------------------------

    def apply(self, key: str, content: str | None = None, *, action: str, who: str,
              role: str | None, name: str | None = None, request: Any = None,
              meta: dict | None = None, expect_groups: list[str] | None = None,
              precheck=None, build=None) -> Version:
        """Swap in content (None: delete) for key, reload, confirm; history; or roll back.

        The change joins the next batch (group commit): changes that arrive while a reload
        is in flight are written together and confirmed by one reload on every replica.
        This call returns only when its own change is confirmed, or raises its own refusal.
        precheck(store) runs under the lock before anything is written (uniqueness checks).
        build(current) -> Edit, under the lock: the change computed from the key's current
        version (read-modify-write without a lost update). expect_groups: the group names
        Prometheus must show for the file (None: none).
        """
        change = _Change(key, Edit(content, action, name, request, expect_groups or []),
                         who, role, meta or {}, precheck, build)
        with self._queue_cv:
            self._queue.append(change)
            self._queue_cv.notify()
            if self._committer is None or not self._committer.is_alive():
                self._committer = threading.Thread(target=self._commit_loop, daemon=True,
                                                   name="rulestore-commit")
                self._committer.start()
        return change.future.result()

    def _commit_loop(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue:
                    self._queue_cv.wait()
                batch, self._queue[:] = list(self._queue), []
            try:
                self._commit_batch(batch)
            except BaseException as exc:  # never leave a caller waiting
                log.exception("rule batch failed")
                for ch in batch:
                    if not ch.future.done():
                        ch.future.set_exception(exc)

    def _stage(self, batch: list[_Change]) -> list[_Staged]:
        """Under the lock: prechecks, builds, pending rows, files written (one dir fsync)."""
        staged: dict[str, _Staged] = {}
        deferred: list[_Change] = []
        for ch in batch:
            try:
                if ch.key not in staged and self._pending_elsewhere(ch.key):
                    deferred.append(ch)  # another process is confirming this key right now
                    continue
                if ch.precheck is not None:
                    ch.precheck(self)
                prior = staged.get(ch.key)
                last = prior.version if prior else self.current(ch.key)
                edit = ch.build(last) if ch.build is not None else ch.edit
                version = self._insert_pending(ch, edit, last)
            except BaseException as exc:
                ch.future.set_exception(exc)
                continue
            path = self.path_of(ch.key)
            if prior is None:
                previous = path.read_text() if path.exists() else None
                old = _group_names(last.content) if last and not last.deleted else set()
                prior = staged[ch.key] = _Staged(ch.key, path, previous, old, [], version,
                                                 edit)
            prior.changes.append((ch, version))
            prior.version, prior.edit = version, edit
        for st in staged.values():
            _swap_file(st.path, st.edit.content)
        if staged:
            fsync_dir(self.rules_dir)
        if deferred:
            with self._queue_cv:
                self._queue[:0] = deferred
            time.sleep(0.05)
        return list(staged.values())

    def _insert_pending(self, ch: _Change, edit: Edit, last: Version | None) -> Version:
        with self._connect() as db:
            top = db.execute("SELECT MAX(version) FROM versions WHERE key=?",
                             (ch.key,)).fetchone()[0] or 0
        old_text = last.content if last else ""
        new_version = max(top, last.version if last else 0) + 1
        diff = "".join(difflib.unified_diff(
            old_text.splitlines(keepends=True), (edit.content or "").splitlines(keepends=True),
            f"{ch.key}@{new_version - 1}", f"{ch.key}@{new_version}"))
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connect() as db:
            # No fsync for the pending row: a kill -9 keeps it (WAL in the page cache);
            # the commit fsyncs the WAL, this frame included.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (ch.key, new_version, "pending", edit.action, ch.who, ch.role, now,
                        edit.name, edit.content or "",
                        json.dumps(edit.request) if edit.request is not None else None,
                        json.dumps(ch.meta), diff, self._writer))
        return Version(ch.key, new_version, edit.action, ch.who, ch.role, now, edit.name,
                       edit.content or "", edit.request, ch.meta, diff)

    def _pending_elsewhere(self, key: str) -> bool:
        with self._connect() as db:
            rows = db.execute("SELECT writer FROM versions WHERE key=? AND state='pending'",
                              (key,)).fetchall()
        return any(r["writer"] != self._writer and _writer_alive(r["writer"]) for r in rows)

    def _commit_batch(self, batch: list[_Change]) -> None:
        with self.locked():
            staged = self._stage(batch)
        # The lock is free while Prometheus reloads: the next batch can gather meanwhile.
        while staged:
            try:
                self._confirm_everywhere(staged)
                break
            except ServiceError as exc:
                culprits = []
                if isinstance(exc, Refused):
                    # Prometheus's answer does not say which file; promtool does.
                    found = self.diagnose([st.path for st in staged])
                    exc.details = exc.details + found
                    culprits = [st for st in staged
                                if st.path.name in {d["field"] for d in found}]
                    if not culprits:  # a file the bridge did not write: name it
                        exc.details += self.diagnose()
                    names = ", ".join(d["field"] for d in exc.details)
                    if names:
                        exc.message += f" (refused: {names})"
                if not culprits or len(culprits) == len(staged):
                    self._undo(staged, exc)
                    return
                # Only the files Prometheus (via promtool) refuses go; the others retry.
                self._undo(culprits, exc)
                staged = [st for st in staged if st not in culprits]
        if not staged:
            return
        with self.locked(), self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for st in staged:
                for _, v in st.changes:
                    db.execute("UPDATE versions SET state='committed', writer=NULL "
                               "WHERE key=? AND version=?", (st.key, v.version))
            db.execute("COMMIT")  # synchronous=FULL: acknowledged means on disk
        self.batches.observe(sum(len(st.changes) for st in staged))
        generation = self.generation()
        for replica in self.replicas:
            replica.loaded = generation
        for st in staged:
            for ch, v in st.changes:
                ch.future.set_result(v)

    def _undo(self, staged: list[_Staged], exc: ServiceError) -> None:
        with self.locked():
            for st in staged:
                _swap_file(st.path, st.previous)
            fsync_dir(self.rules_dir)
            with self._connect() as db:
                for st in staged:
                    for _, v in st.changes:
                        db.execute("DELETE FROM versions WHERE key=? AND version=? AND "
                                   "state='pending'", (st.key, v.version))
        for replica in self.replicas:
            try:
                replica.client.reload()
                self.reloads.labels("success").inc()
            except PromError:
                # Down or refusing: it still runs its previous rules either way.
                self.reloads.labels("failure").inc()
        for st in staged:
            for ch, _ in st.changes:
                err = type(exc)(exc.message + "; the previous rules were restored",
                                [d for d in exc.details if d.get("field") in
                                 (st.path.name, "rules", "replica")] or exc.details, exc.code)
                ch.future.set_exception(err)

    def _confirm_everywhere(self, staged: list[_Staged]) -> None:
        """Reload and confirm the staged files on every replica (in parallel)."""
        files = {st.path: sorted(st.edit.expect_groups) for st in staged}
        filtered = all(st.old_groups <= set(st.edit.expect_groups) for st in staged)
        futures = [(r, self._pool.submit(self._reload_and_confirm, r.client, files, filtered))
                   for r in self.replicas]
        errors = []
        for replica, fut in futures:
            try:
                try:
                    fut.result()
                except PromError as prom_exc:
                    raise from_prom(prom_exc) from None
            except ServiceError as exc:
                replica.error = exc.message
                errors.append((replica, exc))
            else:
                replica.error = None
        if not errors:
            return
        replica, exc = errors[0]
        if len(self.replicas) > 1:
            names = ", ".join(r.url for r, _ in errors)
            for r, _ in errors:
                r.loaded = None  # the reconciler brings it level when it answers again
            raise type(exc)(f"Prometheus replica {names}: {exc.message}",
                            exc.details + [{"field": "replica", "problem": f"{r.url}: {e.message}"}
                                          for r, e in errors])
        raise exc

    def _reload_and_confirm(self, prometheus: PrometheusClient, files: dict[Path, list[str]],
                            filtered: bool = False) -> None:
        """Reload, then wait until Prometheus shows exactly the expected groups of each file.

        filtered: no group may disappear from a file, so asking Prometheus for the
        expected group names only (a small answer) is enough.
        """
        try:
            self._reload(prometheus)
        except PromError as prom_exc:
            exc = from_prom(prom_exc)
            if isinstance(exc, Unavailable):
                exc.message = f"Prometheus at {prometheus.url} is unavailable: {exc.message}"
            raise exc from None
        want = {path.name: names for path, names in files.items()}
        reals = {path.name: (path, os.path.realpath(path)) for path in files}
        names = sorted({n for ns in want.values() for n in ns})
        deadline = time.monotonic() + self.confirm_timeout
        # The reload state is read beside the first poll, not before it (one round trip less).
        info = self._pool.submit(prometheus.runtimeinfo)
        while True:
            try:
                if filtered and names:
                    loaded = prometheus.rules(**{"rule_group[]": names})
                else:
                    loaded = prometheus.rules()
            except PromError as prom_exc:
                raise from_prom(prom_exc) from None
            seen: dict[str, list[str]] = {name: [] for name in want}
            for g in loaded:
                base = os.path.basename(g.get("file", ""))
                if base in reals and _same_file(g["file"], *reals[base]):
                    seen[base].append(g["name"])
            seen = {k: sorted(v) for k, v in seen.items()}
            if seen == want:
                # Read once more before believing a failure: the reload above answered 200.
                if not (info.result().get("reloadConfigSuccess", False)
                        or prometheus.runtimeinfo().get("reloadConfigSuccess", False)):
                    raise Refused("Prometheus reports its last reload failed "
                                  "(prometheus_config_last_reload_successful 0)",
                                  code="reload_failed")
                return
            if time.monotonic() > deadline:
                wrong = {k: (want[k], seen[k]) for k in want if want[k] != seen[k]}
                raise Unavailable(
                    f"Prometheus at {prometheus.url} did not show the expected groups within "
                    f"{self.confirm_timeout:g}s (file: expected, shown: "
                    f"{dict(list(wrong.items())[:5])}); is the bridge's rule directory in its "
                    "rule_files?", code="not_confirmed")
            time.sleep(0.02)

    def _reload(self, prometheus: PrometheusClient | None = None, attempts: int = 3) -> None:
        """POST /-/reload, counted; a refusal is retried before it is raised.

        The files were checked by promtool before they were swapped in, so a refusal is
        most likely Prometheus's own passing trouble; a second refusal after a pause is not.
        """
        prometheus = prometheus or self.prometheus
        for attempt in range(1, attempts + 1):
            try:
                prometheus.reload()
            except PromError as exc:
                self.reloads.labels("failure").inc()
                if not exc.invalid or attempt == attempts:
                    raise
                log.warning("prometheus refused a reload (attempt %d of %d): %s",
                            attempt, attempts, exc.message)
                time.sleep(0.2 * attempt)
            else:
                self.reloads.labels("success").inc()
                return

    # -- replicas --------------------------------------------------------------------------

    def generation(self) -> int:
        """The rule set's version: how many changes have been committed, all keys together."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM versions WHERE state='committed'"
                              ).fetchone()[0]

    def replica_status(self) -> list[dict]:
        """Each replica's URL, the rule version it has confirmed loaded, and its last error."""
        current = self.generation()
        return [{"url": r.url, "loadedVersion": r.loaded, "currentVersion": current,
                 "upToDate": r.loaded == current, **({"error": r.error} if r.error else {})}
                for r in self.replicas]

    def _expected_files(self) -> dict[Path, list[str]]:
        return {self.path_of(v.key): sorted(_group_names(v.content)) for v in self.live("")}

    def reconcile(self) -> list[str]:
        """Bring every replica not known to be level up to date; the URLs it reloaded."""
        behind = [r for r in self.replicas if r.loaded != self.generation()]
        if not behind:
            return []
        with self.locked():
            generation = self.generation()
            files = self._expected_files()
        done = []
        for replica in behind:
            try:
                if not self._shows(replica.client, files):
                    self._reload_and_confirm(replica.client, files)
                    done.append(replica.url)
            except (ServiceError, PromError) as exc:
                replica.error = getattr(exc, "message", str(exc))
                continue
            replica.loaded, replica.error = generation, None
        return done

    def _shows(self, prometheus: PrometheusClient, files: dict[Path, list[str]]) -> bool:
        want = {p.name: names for p, names in files.items()}
        seen: dict[str, list[str]] = {}
        for g in prometheus.rules():
            if os.path.dirname(os.path.realpath(g.get("file", ""))) == \
                    str(self.rules_dir.resolve()) or os.path.basename(g["file"]) in want:
                seen.setdefault(os.path.basename(g["file"]), []).append(g["name"])
        return {k: sorted(v) for k, v in seen.items()} == want

    def _reconcile_loop(self, interval: float) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:  # the loop must outlive a bad round
                log.exception("replica reconcile failed")
            time.sleep(interval)

    def diagnose(self, paths: list[Path] | None = None) -> list[dict]:
        """promtool's complaint about each rule file (default: the directory's) it refuses."""
        binary = shutil.which("promtool")
        if binary is None:
            return []
        out = []
        for path in sorted(paths if paths is not None else self.rules_dir.glob("*.yml")):
            if not path.exists():
                continue
            proc = subprocess.run([binary, "check", "rules", str(path)], capture_output=True,
                                  text=True, timeout=60)
            if proc.returncode != 0:
                out.append({"field": path.name,
                            "problem": (proc.stderr + proc.stdout).strip()[-1000:]})
        return out

    def recover(self) -> list[str]:
        """Roll back changes a killed process left pending; the keys it repaired."""
        with self.locked():
            with self._connect() as db:
                pending = db.execute("SELECT key, version, writer FROM versions "
                                     "WHERE state='pending'").fetchall()
            repaired = []
            for row in pending:
                if row["writer"] != self._writer and _writer_alive(row["writer"]):
                    continue  # another live process is confirming it
                key = row["key"]
                last = self.current(key)
                content = last.content if last and not last.deleted else None
                path = self.path_of(key)
                now = path.read_text() if path.exists() else None
                if now != content:
                    _swap_file(path, content)
                    fsync_dir(self.rules_dir)
                    repaired.append(key)
                with self._connect() as db:
                    db.execute("DELETE FROM versions WHERE key=? AND version=?",
                               (key, row["version"]))
            if repaired:
                try:
                    self.prometheus.reload()
                except PromError:
                    pass
            return repaired


def _swap_file(path: Path, content: str | None) -> None:
    if content is None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    else:
        write_atomic(path, content)


def _writer_alive(writer: str | None) -> bool:
    """True when the process that wrote a pending row still runs (this host only)."""
    if not writer:
        return False
    host, _, rest = writer.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(reported: str, path: Path, real: str) -> bool:
    # Prometheus may see the directory through another mount (compose: /data/rules); the
    # file names the bridge writes (api-<id>.yml, ns-<namespace>.yml) are its own.
    return os.path.basename(reported) == path.name and (
        os.path.realpath(reported) == real or not os.path.exists(reported))


def _group_names(text: str) -> set[str]:
    try:
        doc = yaml.safe_load(text) or {}
        return {g["name"] for g in doc.get("groups") or []}
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        return set()


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def init_app(app) -> RuleStore:
    """Build the app's rule store on every Prometheus replica (shared by the rules API and
    the ruler API)."""
    from pulse.config import parse_duration, prometheus_urls

    cfg = app.config["PULSE"]
    # app.extensions[PROMETHEUS] reads from whichever replica answers; rule changes need
    # one client per replica, so each one's reload is applied and confirmed on its own.
    replicas = [PrometheusClient(url) for url in prometheus_urls(cfg)]
    first = replicas[0]
    store = app.extensions[RULES] = RuleStore(
        cfg.data_dir, first, app.config.get("REGISTRY"),
        confirm_timeout=parse_duration(cfg.bridge.rules.confirm_timeout),
        replicas=replicas if len(replicas) > 1 else None,
        reconcile_interval=parse_duration(cfg.bridge.rules.reconcile_interval)
        if len(replicas) > 1 else None)
    return store
