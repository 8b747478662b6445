"""Durable state of the AI exporter: evaluations, drift references and observation buckets.

One JSON document under `<data_dir>/ai/state.json`, rewritten atomically (temp
file, fsync, rename) before a request is acknowledged, so what was accepted
survives kill -9.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

from pulse.fileio import write_atomic

STATE_VERSION = 1


def _key(model: str, feature: str) -> str:
    return f"{model}/{feature}"


class AiStore:
    """Thread-safe, write-through store of everything the AI exporter was told."""

    def __init__(self, path: Path, *, max_versions: int = 5, bucket_seconds: int = 60,
                 window_seconds: float = 86400, clock=time.time):
        self.path = Path(path)
        self.max_versions = max_versions
        self.bucket_seconds = bucket_seconds
        self.window_seconds = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            state = {}
        state.setdefault("version", STATE_VERSION)
        for section in ("evaluations", "references", "observations"):
            state.setdefault(section, {})
        return state

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self._state, sort_keys=True))

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the whole state."""
        with self._lock:
            return copy.deepcopy(self._state)

    # Stored evaluations and references are replaced whole on every write, never
    # mutated in place, so shallow copies are safe to read without the lock (and a
    # scrape does not pay for a deep copy).
    def evaluations(self) -> dict[str, dict[str, dict]]:
        """model -> version -> the latest evaluation (read-only)."""
        with self._lock:
            return {m: dict(v) for m, v in self._state["evaluations"].items()}

    def references(self) -> list[dict]:
        """Every registered drift reference (read-only)."""
        with self._lock:
            return list(self._state["references"].values())

    # -- evaluations -------------------------------------------------------
    def models(self) -> set[str]:
        """Every model known from evaluations or drift references."""
        with self._lock:
            refs = {r["model"] for r in self._state["references"].values()}
            return set(self._state["evaluations"]) | refs

    def put_evaluation(self, evaluation: dict[str, Any]) -> bool:
        """Keep the evaluation unless a newer one of the same version exists; True if kept."""
        with self._lock:
            versions = self._state["evaluations"].setdefault(evaluation["model"], {})
            old = versions.get(evaluation["modelVersion"])
            if old is not None and old["evaluatedAt"] > evaluation["evaluatedAt"]:
                return False
            versions[evaluation["modelVersion"]] = evaluation
            # Bounded: only the most recently evaluated versions stay exported.
            keep = sorted(versions.values(), key=lambda e: e["evaluatedAt"],
                          reverse=True)[:self.max_versions]
            self._state["evaluations"][evaluation["model"]] = {
                e["modelVersion"]: e for e in keep}
            self._save()
            return evaluation["modelVersion"] in self._state["evaluations"][evaluation["model"]]

    # -- drift -------------------------------------------------------------
    def features(self, model: str) -> set[str]:
        """Features with a reference for this model."""
        with self._lock:
            return {r["feature"] for r in self._state["references"].values()
                    if r["model"] == model}

    def reference(self, model: str, feature: str) -> dict[str, Any] | None:
        """The registered reference of (model, feature), or None."""
        with self._lock:
            ref = self._state["references"].get(_key(model, feature))
            return copy.deepcopy(ref)

    def put_reference(self, reference: dict[str, Any]) -> None:
        """Register (or replace) a reference; current observations start over."""
        key = _key(reference["model"], reference["feature"])
        with self._lock:
            self._state["references"][key] = reference
            self._state["observations"][key] = []
            self._save()

    def add_observations(self, model: str, feature: str, counts: list[int],
                         at: float | None = None) -> None:
        """Add binned counts to the current time bucket of (model, feature)."""
        key = _key(model, feature)
        now = self.clock() if at is None else at
        start = int(now // self.bucket_seconds * self.bucket_seconds)
        with self._lock:
            buckets = self._state["observations"].setdefault(key, [])
            if buckets and buckets[-1][0] == start:
                buckets[-1][1] = [a + b for a, b in zip(buckets[-1][1], counts, strict=True)]
            else:
                buckets.append([start, list(counts)])
            self._prune(buckets, now)
            self._save()

    def _prune(self, buckets: list, now: float) -> None:
        horizon = now - self.window_seconds - self.bucket_seconds
        while buckets and buckets[0][0] < horizon:
            buckets.pop(0)

    def window_counts(self, model: str, feature: str, now: float | None = None) -> list[int]:
        """Observation counts per bin over the drift window ending now."""
        now = self.clock() if now is None else now
        with self._lock:
            ref = self._state["references"].get(_key(model, feature))
            buckets = self._state["observations"].get(_key(model, feature), [])
            if ref is None:
                return []
            total = [0] * len(ref["counts"])
            for start, counts in buckets:
                # A bucket counts when it overlaps the window (minute resolution).
                if start + self.bucket_seconds > now - self.window_seconds:
                    total = [a + b for a, b in zip(total, counts, strict=True)]
            return total
