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
   (Refused or Unavailable, with Prometheus's words) raised.

A SIGKILL anywhere leaves either the old or the new file (never a torn one).
On start, under the same lock, a pending row left by a killed process is
rolled back: its file is restored to the last committed version, so the
history and the files agree again.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from prometheus_client import CollectorRegistry, Counter

from bridge.services import PROMETHEUS, RULES
from bridge.services.errors import Refused, ServiceError, Unavailable, from_prom
from pulse.config import parse_duration
from pulse.fileio import fsync_dir, write_atomic
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
                 registry: CollectorRegistry | None = None, confirm_timeout: float = 15.0):
        self.rules_dir = bridge_rules_dir(data_dir)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(data_dir) / "bridge"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.state_dir / "rules.sqlite"
        self.prometheus = prometheus
        self.confirm_timeout = confirm_timeout
        self._lock_path = self.rules_dir / ".lock"
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rulestore")
        with _DIR_LOCKS_GUARD:
            self._thread_lock = _DIR_LOCKS.setdefault(str(self.rules_dir.resolve()),
                                                      threading.Lock())
        self.reloads = Counter("pulse_bridge_rule_reloads", "Prometheus reloads made by the "
                               "bridge after a rule change, by result (success|failure).",
                               ["result"], registry=registry or CollectorRegistry())
        for result in ("success", "failure"):
            self.reloads.labels(result)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self.recover()

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
        with self._thread_lock, open(self._lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

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
                "WHERE state='committed' AND key LIKE ? ESCAPE '\\' GROUP BY key) m "
                "ON v.key = m.key AND v.version = m.mv WHERE v.action != 'delete' "
                "AND v.name = ? AND v.key != ? LIMIT 1",
                (_like_prefix(prefix), name, except_key or "")).fetchone()
        return row["key"] if row else None

    # -- applying changes ------------------------------------------------------------------

    def apply(self, key: str, content: str | None, *, action: str, who: str,
              role: str | None, name: str | None = None, request: Any = None,
              meta: dict | None = None, expect_groups: list[str] | None = None,
              precheck=None) -> Version:
        """Swap in content (None: delete) for key, reload, confirm; history; or roll back.

        precheck(store) runs under the lock before anything is written (uniqueness checks).
        expect_groups: the group names Prometheus must show for the file (None: none).
        """
        path = self.path_of(key)
        with self.locked():
            if precheck is not None:
                precheck(self)
            previous = path.read_text() if path.exists() else None
            last = self.current(key)
            old_text = last.content if last else ""
            new_version = (last.version if last else 0) + 1
            diff = "".join(difflib.unified_diff(
                old_text.splitlines(keepends=True), (content or "").splitlines(keepends=True),
                f"{key}@{new_version - 1}", f"{key}@{new_version}"))
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            with self._connect() as db:
                # No fsync for the pending row: a kill -9 keeps it (WAL in the page cache);
                # the commit below fsyncs the WAL, this frame included.
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM versions WHERE key=? AND state='pending'", (key,))
                db.execute("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           (key, new_version, "pending", action, who, role, now, name,
                            content or "", json.dumps(request) if request is not None else None,
                            json.dumps(meta or {}), diff))
                db.execute("COMMIT")
            old_groups = _group_names(old_text) if last and not last.deleted else set()
            try:
                self._swap(path, content)
                self._reload_and_confirm(path, expect_groups or [],
                                         filtered=old_groups <= set(expect_groups or []))
            except BaseException as exc:
                self._restore(path, previous)
                with self._connect() as db:
                    db.execute("DELETE FROM versions WHERE key=? AND version=? AND "
                               "state='pending'", (key, new_version))
                if isinstance(exc, PromError):
                    exc = from_prom(exc)
                if isinstance(exc, ServiceError):
                    exc.message += "; the previous rules were restored"
                raise exc
            with self._connect() as db:
                db.execute("UPDATE versions SET state='committed' WHERE key=? AND version=?",
                           (key, new_version))
        return Version(key, new_version, action, who, role, now, name, content or "",
                       request, meta or {}, diff)

    def _swap(self, path: Path, content: str | None) -> None:
        if content is None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        else:
            write_atomic(path, content)
        fsync_dir(self.rules_dir)

    def _restore(self, path: Path, previous: str | None) -> None:
        self._swap(path, previous)
        try:
            self.prometheus.reload()
            self.reloads.labels("success").inc()
        except PromError:
            # Prometheus is down or refuses: it still runs its previous rules either way.
            self.reloads.labels("failure").inc()

    def _reload_and_confirm(self, path: Path, groups: list[str], filtered: bool = False) -> None:
        """Reload, then wait until Prometheus shows exactly groups from path.

        filtered: no group may disappear from the file, so asking Prometheus for the
        expected group names only (a small answer) is enough.
        """
        try:
            self._reload()
        except PromError as prom_exc:
            exc = from_prom(prom_exc)
            if isinstance(exc, Refused):
                # Prometheus's answer does not say which file; promtool does (failure path only).
                exc.details = exc.details + self.diagnose()
                names = ", ".join(d["field"] for d in exc.details)
                if names:
                    exc.message += f" (refused: {names})"
            raise exc from None
        want = sorted(groups)
        real = os.path.realpath(path)
        deadline = time.monotonic() + self.confirm_timeout
        seen: list[str] = []
        # The reload state is read beside the first poll, not before it (one round trip less).
        info = self._pool.submit(self.prometheus.runtimeinfo)
        while True:
            if filtered and want:
                loaded = self.prometheus.rules(**{"rule_group[]": want})
            else:
                loaded = self.prometheus.rules()
            seen = sorted(g["name"] for g in loaded if _same_file(g.get("file", ""), path, real))
            if seen == want:
                # Read once more before believing a failure: the reload above answered 200.
                if not (info.result().get("reloadConfigSuccess", False)
                        or self.prometheus.runtimeinfo().get("reloadConfigSuccess", False)):
                    raise Refused("Prometheus reports its last reload failed "
                                  "(prometheus_config_last_reload_successful 0)",
                                  code="reload_failed")
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"Prometheus did not show the expected groups {want} from {path.name} "
                    f"within {self.confirm_timeout:g}s (it shows {seen}); is the bridge's "
                    "rule directory in its rule_files?", code="not_confirmed")
            time.sleep(0.02)

    def _reload(self, attempts: int = 3) -> None:
        """POST /-/reload, counted; a refusal is retried before it is raised.

        The files were checked by promtool before they were swapped in, so a refusal is
        most likely Prometheus's own passing trouble; a second refusal after a pause is not.
        """
        for attempt in range(1, attempts + 1):
            try:
                self.prometheus.reload()
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

    def diagnose(self) -> list[dict]:
        """promtool's complaint about each rule file in the directory that it refuses."""
        binary = shutil.which("promtool")
        if binary is None:
            return []
        out = []
        for path in sorted(self.rules_dir.glob("*.yml")):
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
                pending = db.execute("SELECT key, version FROM versions "
                                     "WHERE state='pending'").fetchall()
            repaired = []
            for row in pending:
                key = row["key"]
                last = self.current(key)
                content = last.content if last and not last.deleted else None
                path = self.path_of(key)
                now = path.read_text() if path.exists() else None
                if now != content:
                    self._swap(path, content)
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


def init_app(app: Flask) -> RuleStore:
    """Build the app's rule store (shared by the rules API and the ruler API)."""
    cfg = app.config["PULSE"]
    store = RuleStore(cfg.data_dir, app.extensions[PROMETHEUS], app.config.get("REGISTRY"),
                      confirm_timeout=parse_duration(cfg.bridge.rules.confirm_timeout))
    app.extensions[RULES] = store
    return store


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
