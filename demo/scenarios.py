"""Incident scenarios of the demo: their names, what each changes, and the shared state file.

The active scenario lives in one small JSON file in the data directory, written
atomically by the demo app's control endpoint (`POST /demo/scenario`, or
`pulse demo scenario <name>`) and read by every demo process (app, simulator,
payment provider), so one switch changes them all within a second.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pulse.fileio import write_atomic

# name -> (what it does, the alert it makes fire). Alert names from the rules issue.
SCENARIOS: dict[str, tuple[str, str | None]] = {
    "normal": ("everything healthy; resolves the alerts of the other scenarios", None),
    "latency-spike": ("GET /api/users/{user_id}/workouts takes 2-3 s (a slow query): "
                      "p95 of that route above 2 s", "ApiLatencyP95High"),
    "ai-accuracy-drop": ("the workout model's acceptance falls to 60 %",
                         "AiRecommendationAccuracyLow"),
    "integration-outage": ("the fake payment provider stops answering",
                           "IntegrationProbeFailing"),
    "crash-spike": ("android app 5.3.0 crashes in half of its sessions", "AppCrashRateHigh"),
    "ingest-garbage": ("a broken client sends malformed events to the intake",
                       "IngestRejectionRatioHigh"),
    "disk-filling": ("the demo writes into a small filesystem until it is nearly full",
                     "NodeFilesystemFillingUp"),
}

LATENCY_ROUTE = "/api/users/{user_id}/workouts"
DEGRADED_MODEL = "workout"
CRASHING = ("android", "5.3.0")


def state_path(data_dir: str | os.PathLike) -> Path:
    """Where the active scenario is kept."""
    return Path(data_dir) / "demo" / "scenario.json"


def write_scenario(data_dir: str | os.PathLike, name: str) -> dict:
    """Make name the active scenario (atomically); return the new state."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
    state = {"name": name, "since": time.time()}
    write_atomic(state_path(data_dir), json.dumps(state))
    return state


def read_scenario(data_dir: str | os.PathLike) -> dict:
    """The active scenario's state; 'normal' when none was set or the file is unreadable."""
    try:
        state = json.loads(state_path(data_dir).read_text())
        if state.get("name") in SCENARIOS:
            return state
    except (OSError, ValueError, AttributeError):
        pass
    return {"name": "normal", "since": 0.0}


class ScenarioWatch:
    """The active scenario name, re-read from the state file at most once per interval."""

    def __init__(self, data_dir: str | os.PathLike, interval: float = 0.5):
        self.data_dir = data_dir
        self.interval = interval
        self._checked = 0.0
        self._name = "normal"
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The active scenario (cheap: a clock read between file reads)."""
        now = time.monotonic()
        if now - self._checked >= self.interval:
            with self._lock:
                if now - self._checked >= self.interval:
                    self._name = read_scenario(self.data_dir)["name"]
                    self._checked = now
        return self._name

    def active(self, name: str) -> bool:
        """True while scenario name is the active one."""
        return self.name == name
