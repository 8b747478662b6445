"""Per-user profiling behind the intake: a sink feeding the profile store, and its collector.

`ProfileSink.consume` is called by the intake after a batch is durable in the event log and
before the answer is sent (events with canProfile true only). It projects the events (no
I/O) and hands them to one writer thread that applies everything pending in one SQLite
transaction (group commit, the same writer as the event log's: `exporters.events.groupcommit`);
the intake waits for that commit (after feeding its other sinks, whose writes overlap it)
before answering, so:

- every acknowledged event is in the profile store exactly once: the commit precedes the
  acknowledgement, the intake never re-delivers an id it counted, and counters also check
  their own record of event ids (`seen`, kept `dedup_window`) beyond the intake's window;
- a batch interrupted by a crash between the event log's fsync and the profile commit was
  never acknowledged; its retry is deduplicated by the intake and not re-delivered, so such
  events are counted in the aggregate counters but missing from profiles (at most once).

`ProfilesCollector` exports the additive aggregates (pulse.profiles.aggregates) and
`privacy.k_anonymity` as `pulse_profiles_k_anonymity`, which the recording rules of
rules/profiles.rules.yml use to publish the k-anonymous series after summing over processes.
They are computed by a background thread every `refresh_interval` (a full read of the store)
and served from memory on each scrape; the same thread runs the retention job every
`retention_interval` (the aggregators run it on their partitions themselves).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from exporters.events.groupcommit import GroupClosed, GroupCommit
from pulse.config import Config, parse_duration
from pulse.profiles import aggregates
from pulse.profiles.store import ProfileStore, connect, db_path

log = logging.getLogger(__name__)
COMMIT_TIMEOUT = 30.0


class ProfileSink:
    """Feeds consented events to the profile store with group commit (see the module doc)."""

    requires_profile_consent = True

    def __init__(self, store: ProfileStore):
        self.store = store
        self.committed = 0
        self._writer = GroupCommit(self._commit, "profiles-writer")

    def consume(self, events: list[dict], batch_id: str) -> Callable[[], None] | None:
        """Project a batch and queue it; returns what waits until its profile changes are
        committed (the intake calls it after feeding its other sinks, which run meanwhile)."""
        observations = self.store.project(events)
        if not observations:
            return None
        try:
            waiter = self._writer.enqueue(observations)
        except GroupClosed:
            return None

        def wait() -> None:
            try:
                self._writer.wait(waiter, COMMIT_TIMEOUT)
            except TimeoutError:
                log.error("profiles of batch %s not committed within %ss", batch_id,
                          COMMIT_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - logged; never breaks the acknowledgement
                log.error("profiles of batch %s not written: %s", batch_id, exc)
        return wait

    def _commit(self, group: list[list]) -> list[None]:
        """Apply every queued batch's observations in one transaction."""
        self.store.apply([obs for observations in group for obs in observations])
        self.committed += len(group)
        return [None] * len(group)

    def close(self) -> None:
        """Finish pending writes and stop the writer."""
        self._writer.close()


class ProfilesCollector:
    """Serves the last computed aggregates; a background thread refreshes them."""

    def __init__(self, path, *, k: int, funnels: dict, refresh_seconds: float,
                 max_coaches: int = 1000, clock=time.time, purge=None,
                 retention_interval_seconds: float = 3600.0, open_conn=None):
        self.path = path
        # Given: a fresh connection per refresh (the aggregator merges its partitions).
        self.open_conn = open_conn
        self.k = k
        self.funnels = funnels
        self.refresh_seconds = refresh_seconds
        self.max_coaches = max_coaches
        self.clock = clock
        self.purge = purge
        self.retention_interval = retention_interval_seconds
        self.families: list[aggregates.Family] = []
        self.success = 0.0
        self.duration = 0.0
        self.refreshed_at = 0.0
        self._conn = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ProfilesCollector:
        """Refresh once now, then in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="profiles-refresh", daemon=True)
        self._thread.start()
        return self

    def refresh(self) -> None:
        """Recompute every aggregate from the store (a failure keeps no stale numbers)."""
        started = time.perf_counter()
        try:
            if self.open_conn is not None:
                conn = self.open_conn()
                try:
                    self.families = aggregates.compute(conn, self.clock(), self.funnels,
                                                       self.max_coaches)
                finally:
                    conn.close()
            else:
                if self._conn is None:
                    self._conn = connect(self.path, readonly=True)
                self.families = aggregates.compute(self._conn, self.clock(), self.funnels,
                                                   self.max_coaches)
            self.success = 1.0
            self.refreshed_at = self.clock()
        except Exception:  # noqa: BLE001 - the exporter keeps serving its other metrics
            log.exception("profile aggregates could not be computed")
            self.families, self.success = [], 0.0
        self.duration = time.perf_counter() - started

    def _loop(self) -> None:
        next_purge = time.monotonic()
        while not self._stop.wait(self.refresh_seconds):
            if self.purge is not None and time.monotonic() >= next_purge:
                try:
                    removed = self.purge()
                    if removed:
                        log.info("retention: deleted %d inactive user records", removed)
                except Exception:  # noqa: BLE001 - retried at the next interval
                    log.exception("profile retention job failed")
                next_purge = time.monotonic() + self.retention_interval
            self.refresh()

    def collect(self):
        """The aggregates of the last refresh (its health: `last_run()`)."""
        for fam in self.families:
            if fam.kind == "gaugehistogram":
                out = GaugeHistogramMetricFamily(fam.name, fam.help, labels=list(fam.labels))
                bounds = [*(floatToGoString(b) for b in fam.buckets), "+Inf"]
                for labels, (counts, total) in fam.samples:
                    out.add_metric(list(labels), list(zip(bounds, counts, strict=True)),
                                   gsum_value=total)
            else:
                out = GaugeMetricFamily(fam.name, fam.help, labels=list(fam.labels))
                for labels, value in fam.samples:
                    out.add_metric(list(labels), value)
            yield out
        if self.families:  # with the families only: a failed refresh publishes nothing
            k = GaugeMetricFamily(aggregates.K_GAUGE,
                                  "privacy.k_anonymity: the published profile series "
                                  "(rules/profiles.rules.yml) leave out groups of fewer users.")
            k.add_metric([], float(self.k))
            yield k
        at = GaugeMetricFamily("pulse_profiles_refresh_timestamp_seconds",
                               "When the profile aggregates were last computed.")
        at.add_metric([], self.refreshed_at)
        yield at

    def last_run(self) -> tuple[float, float]:
        """(success, seconds) of the last refresh: what the scrape wrapper reports for it."""
        return self.success, self.duration

    def close(self) -> None:
        """Stop the refresh thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def profile_sink(cfg: Config, clock=time.time) -> ProfileSink:
    """The sink for an intake, with the aggregates collector (started) as `sink.collector`."""
    section = cfg.exporters.events.profiles
    path = db_path(cfg.data_dir)
    store = ProfileStore(path, cfg.privacy.salt, funnels=section.funnels.to_dict(),
                         pii_patterns=cfg.privacy.pii_patterns.values(),
                         dedup_window_seconds=parse_duration(section.dedup_window), clock=clock)
    retention = parse_duration(section.retention)
    # The retention job runs in the refresh thread: its own connection, never the writer's.
    purger = []

    def purge() -> int:
        if not purger:
            purger.append(ProfileStore(path, cfg.privacy.salt, clock=clock,
                                       dedup_window_seconds=parse_duration(section.dedup_window)))
        return purger[0].purge(retention)

    collector = ProfilesCollector(
        path, k=cfg.privacy.k_anonymity, funnels=section.funnels.to_dict(),
        refresh_seconds=parse_duration(section.refresh_interval),
        max_coaches=section.max_coaches, clock=clock,
        purge=purge,
        retention_interval_seconds=parse_duration(section.retention_interval))
    sink = ProfileSink(store)
    sink.collector = collector.start()
    return sink
