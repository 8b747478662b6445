"""The scrape loop every Pulse exporter shares: run each collector, never fail the scrape."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)


class ScrapeCollector:
    """Collects from a table of named collectors, exporting success and duration of each.

    A collector that raises contributes none of its series to that scrape (a half
    scrape would look like disappearing series), its success is 0 and its
    duration is still exported. A collector that computes in the background and serves
    the result on each scrape reports that computation instead: it has a
    `last_run() -> (success, seconds)` method, and its `collect()` yields what is left.
    """

    def __init__(self, collectors: Iterable[tuple[str, object]],
                 perf_counter: Callable[[], float] = time.perf_counter):
        self.collectors = list(collectors)
        self.perf_counter = perf_counter

    def collect(self) -> Iterator[Metric]:
        """One scrape: every enabled collector's families, then the scrape meta-series."""
        success = GaugeMetricFamily(
            "pulse_scrape_collector_success",
            "Whether a collector's last run (this scrape, or its background refresh) "
            "succeeded (1) or failed (0).", labels=["collector"])
        duration = GaugeMetricFamily(
            "pulse_scrape_collector_duration_seconds",
            "How long a collector's last run (this scrape, or its background refresh) took.",
            labels=["collector"])
        for name, collector in self.collectors:
            start = self.perf_counter()
            try:
                families = list(collector.collect())
                ok = 1.0
            except Exception:  # noqa: BLE001 - any collector failure must not fail the scrape
                log.exception("collector %s failed", name)
                families, ok = [], 0.0
            took = self.perf_counter() - start
            last_run = getattr(collector, "last_run", None)
            if last_run is not None and ok:
                ok, took = last_run()
            duration.add_metric([name], took)
            success.add_metric([name], ok)
            yield from families
        yield success
        yield duration
