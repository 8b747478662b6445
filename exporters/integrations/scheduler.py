"""Scheduled probes: each target probed every interval in its own thread; scrapes read results.

A thread per target keeps a slow or hanging target from delaying any other
one, and a scrape never waits for a probe: it reads the last finished result.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from exporters.integrations.probe import REASONS, ProbeResult, ProbeSpec, run_probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A configured integration: its name (the `integration` label), probe and interval."""

    name: str
    spec: ProbeSpec
    interval: float


class Scheduler:
    """Runs every target's probe periodically and keeps the last result and failure counts."""

    def __init__(self, targets: list[Target], run: Callable[[ProbeSpec], ProbeResult] = run_probe):
        self.targets = list(targets)
        self.run = run
        self._lock = threading.Lock()
        self._results: dict[str, ProbeResult] = {}
        self._probes: Counter[str] = Counter()
        self._failures: Counter[tuple[str, str]] = Counter()
        self._last_reason: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        """Start one daemon thread per target; each probes at once, then every interval."""
        for target in self.targets:
            thread = threading.Thread(target=self._loop, args=(target,), daemon=True,
                                      name=f"probe-{target.name}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every thread to stop and wait a little for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def probe_once(self, target: Target) -> ProbeResult:
        """Probe a target now and record the result."""
        result = self.run(target.spec)
        with self._lock:
            self._results[target.name] = result
            self._probes[target.name] += 1
            if not result.success:
                self._failures[(target.name, result.reason or "other")] += 1
            previous = self._last_reason.get(target.name)
            self._last_reason[target.name] = result.reason
        # Log changes only: a target down for hours would otherwise log every interval.
        if result.reason != previous:
            if result.success:
                log.info("probe %s: succeeding again", target.name)
            else:
                log.warning("probe %s failing: %s", target.name, result.reason)
        return result

    def _loop(self, target: Target) -> None:
        while not self._stop.is_set():
            try:
                self.probe_once(target)
            except Exception:  # noqa: BLE001 - the loop must outlive any bug in one probe
                log.exception("probe %s crashed", target.name)
            self._stop.wait(target.interval)

    def snapshot(self) -> tuple[dict[str, ProbeResult], dict[str, int], dict[tuple[str, str], int]]:
        """Copies of the last results, probe counts and failure counts."""
        with self._lock:
            return dict(self._results), dict(self._probes), dict(self._failures)


def reason_counts(name: str, failures: dict[tuple[str, str], int]) -> dict[str, int]:
    """Every reason for one integration, zero where it never failed that way."""
    return {reason: failures.get((name, reason), 0) for reason in REASONS}
