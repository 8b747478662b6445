"""Experiment exposures and conversions per unit: the SQLite file the events intake writes.

Prometheus counters count events; an experiment's statistics need units (users): each unit
once per variant, the first time it saw it, and each success metric once per unit. The
intake's `ExperimentSink` (exporters.events.experiments) writes here; the bridge reads.

A unit is the pseudonymous key of the event's userId (HMAC-SHA256 with privacy.salt, as in
the profile store), so no user id is stored. Rows are keyed (experiment, unit, variant[,
metric]) and written with INSERT OR IGNORE, so a repeated exposure or conversion changes
nothing and the first time stays. The audience attributes of the unit's first exposure
(platform from deviceInfo, plan and newUser from the properties when the app sends them)
are kept to check the experiment's targetAudience; `preValue` (a number the app knows for
the unit before the experiment, e.g. workouts in the last 28 days) is CUPED's covariate.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from pulse.profiles.store import parse_time, pseudonymise

SCHEMA = """
CREATE TABLE IF NOT EXISTS exposures (
  experiment TEXT NOT NULL, unit BLOB NOT NULL, variant TEXT NOT NULL, ts REAL NOT NULL,
  platform TEXT, plan TEXT, new_user INTEGER, pre_value REAL,
  PRIMARY KEY (experiment, unit, variant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversions (
  experiment TEXT NOT NULL, unit BLOB NOT NULL, variant TEXT NOT NULL, metric TEXT NOT NULL,
  ts REAL NOT NULL, PRIMARY KEY (experiment, unit, variant, metric)
) WITHOUT ROWID;
"""
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


def db_path(data_dir: str | Path) -> Path:
    """Where the unit-level experiment data of a data directory lives."""
    return Path(data_dir) / "experiments" / "units.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    """A WAL-mode connection with the schema in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _name(value) -> str | None:
    return value if isinstance(value, str) and NAME.match(value) else None


def project(events: Iterable[dict], salt: str) -> tuple[list[tuple], list[tuple]]:
    """The exposure and conversion rows of a batch (events without a userId are skipped)."""
    exposures, conversions = [], []
    for ev in events:
        if ev.get("category") != "experiment" or "userId" not in ev:
            continue
        props = ev.get("properties") or {}
        exp, variant = _name(props.get("experiment")), _name(props.get("variant"))
        ts = parse_time(ev.get("timestamp"))
        if exp is None or variant is None or ts is None:
            continue
        unit = pseudonymise(salt, ev["userId"])
        if ev.get("action") == "exposure":
            new_user = props.get("newUser")
            pre = props.get("preValue")
            pre = float(pre) if isinstance(pre, int | float) and not isinstance(pre, bool) \
                and math.isfinite(pre) else None
            exposures.append((exp, unit, variant, ts, (ev.get("deviceInfo") or {}).get(
                "platform"), _name(props.get("plan")),
                int(new_user) if isinstance(new_user, bool) else None, pre))
        elif ev.get("action") == "conversion":
            metric = _name(props.get("metric"))
            if metric is not None:
                conversions.append((exp, unit, variant, metric, ts))
    return exposures, conversions


class UnitStore:
    """Writes and reads the per-unit rows (one connection, serialised by a lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = connect(self.path)
        self._lock = threading.Lock()

    def add(self, exposures: list[tuple], conversions: list[tuple]) -> None:
        """Insert rows in one transaction; a row already there keeps its first time."""
        if not exposures and not conversions:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # The earliest time wins even when events arrive out of order.
                self._db.executemany(
                    "INSERT INTO exposures VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO "
                    "UPDATE SET ts = excluded.ts, platform = excluded.platform, plan = "
                    "excluded.plan, new_user = excluded.new_user, pre_value = "
                    "excluded.pre_value WHERE excluded.ts < exposures.ts", exposures)
                self._db.executemany(
                    "INSERT INTO conversions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
                    "SET ts = excluded.ts WHERE excluded.ts < conversions.ts", conversions)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def exposures(self, experiment: str) -> list[tuple]:
        """(unit, variant, ts, platform, plan, new_user, pre_value) of every exposure row."""
        with self._lock:
            return self._db.execute(
                "SELECT unit, variant, ts, platform, plan, new_user, pre_value FROM exposures "
                "WHERE experiment = ?", (experiment,)).fetchall()

    def conversions(self, experiment: str) -> list[tuple]:
        """(unit, variant, metric, ts) of every conversion row."""
        with self._lock:
            return self._db.execute(
                "SELECT unit, variant, metric, ts FROM conversions WHERE experiment = ?",
                (experiment,)).fetchall()

    def forget(self, unit: bytes) -> None:
        """Delete a unit's rows (withdrawal of consent)."""
        with self._lock:
            self._db.execute("DELETE FROM exposures WHERE unit = ?", (unit,))
            self._db.execute("DELETE FROM conversions WHERE unit = ?", (unit,))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
