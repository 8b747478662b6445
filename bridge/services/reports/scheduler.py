"""Scheduled reports: a bridge thread that emails each configured report when it falls due.

The last period sent per schedule is kept in <data_dir>/reports/schedules.json (written
atomically), so a restart neither repeats nor skips a report; a failed send is retried
at the next check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pulse.config import parse_duration
from pulse.fileio import write_atomic

log = logging.getLogger(__name__)


def last_due(cadence: str, at: str, now: float) -> float:
    """The latest time <= now the schedule was due: daily at `at`, Mondays, or the 1st."""
    hour, minute = (int(x) for x in at.split(":"))
    current = datetime.fromtimestamp(now, UTC)
    due = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if cadence == "daily":
        if due > current:
            due -= timedelta(days=1)
    elif cadence == "weekly":
        due -= timedelta(days=due.weekday())
        if due > current:
            due -= timedelta(days=7)
    else:
        due = due.replace(day=1)
        if due > current:
            due = (due - timedelta(days=1)).replace(day=1)
    return due.timestamp()


def period(cadence: str, due: float) -> tuple[float, float]:
    """The range a report due at `due` covers: the previous day, 7 days or calendar month."""
    if cadence == "daily":
        return due - 86400, due
    if cadence == "weekly":
        return due - 7 * 86400, due
    end = datetime.fromtimestamp(due, UTC)
    start = (end - timedelta(days=1)).replace(day=1)
    return start.timestamp(), due


class ReportScheduler:
    """Checks the schedules every interval and sends the due ones (send(schedule, start, end))."""

    def __init__(self, schedules, state_path: Path, interval: float,
                 send: Callable[[Mapping, float, float], None],
                 clock: Callable[[], float] = time.time):
        self.schedules = list(schedules)
        self.state_path = Path(state_path)
        self.interval = interval
        self.send = send
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs: list[dict] = []

    def state(self) -> dict:
        """{schedule name: last due time sent}."""
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def run_due(self) -> list[str]:
        """Send every schedule whose due time has passed since its last send; their names."""
        now = self.clock()
        state = self.state()
        done = []
        for sched in self.schedules:
            due = last_due(sched["cadence"], sched["at"], now)
            last = state.get(sched["name"])
            if last is None:
                # First start: the next due time is the first report (no back-fill burst).
                state[sched["name"]] = due
                self._save(state)
                continue
            if last >= due:
                continue
            start, end = period(sched["cadence"], due)
            try:
                self.send(sched, start, end)
            except Exception as exc:  # one failing schedule must not stop the others
                log.error("scheduled report %s failed: %s", sched["name"], exc)
                self.runs.append({"name": sched["name"], "due": due, "ok": False})
                continue
            state[sched["name"]] = due
            self._save(state)
            self.runs.append({"name": sched["name"], "due": due, "ok": True})
            done.append(sched["name"])
        return done

    def _save(self, state: dict) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, json.dumps(state, sort_keys=True))

    def _loop(self) -> None:
        while True:
            try:
                self.run_due()
            except Exception:  # keep the thread alive whatever a check raises
                log.exception("report scheduler check failed")
            if self._stop.wait(self.interval):
                return

    def start(self) -> ReportScheduler:
        """Run the checks in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="report-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current check."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)


def interval_of(cfg) -> float:
    """The configured check interval in seconds."""
    return float(parse_duration(cfg.bridge.reports.check_interval))
