"""The events intake (`python -m exporters.events`): analytics events in, Prometheus metrics out.

POST /api/analytics/events and /api/analytics/events/batch take batches of AnalyticsEvent
(docs/events.md), the Segment-compatible /v1/* endpoints take Segment messages (translated by
exporters/events/segment.py, routed by exporters/events/gateway.py); both acknowledge them
only once durable (exporters/events/store.py), and the
metrics the mapping (exporters/events/mapping.yml) derives from them are exposed on /metrics
by `EventsCollector` from the restored state, so they survive restarts exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from exporters.events.experiments import experiment_sink
from exporters.events.gateway import IngestMiddleware
from exporters.events.intake import Intake, Limits
from exporters.events.mapping import load_mapping
from exporters.events.openapi import document
from exporters.events.profiles import profile_sink
from exporters.events.segment import Translator, load_table
from exporters.events.sources import Sources
from exporters.events.store import EventStore
from exporters.scrape import ScrapeCollector
from pulse.config import Config, parse_duration
from pulse.service import add_access, add_standard_routes, guard

log = logging.getLogger(__name__)
COMPONENT = "exporters.events"


class EventsCollector:
    """Yields the mapped metrics and the intake's own counters from the durable state."""

    def __init__(self, store: EventStore):
        self.store = store

    def collect(self):
        """Fresh metric families each scrape (run through `exporters.scrape`)."""
        counters, hists = self.store.read_metrics()
        for d, series in counters:
            fam = CounterMetricFamily(d.name, d.help, labels=d.labels)
            seen = set()
            for labels, value in series:
                fam.add_metric(labels, value)
                seen.add(labels)
            # Known label values start at 0 (exported only, never stored).
            for labels in d.initial:
                if labels not in seen:
                    fam.add_metric(labels, 0.0)
            yield fam
        for d, series in hists:
            fam = HistogramMetricFamily(d.name, d.help, labels=d.labels)
            for labels, cells in series:
                cumulative, running = [], 0.0
                for bound, count in zip(d.buckets, cells, strict=False):
                    running += count
                    cumulative.append((_le(bound), running))
                running += cells[len(d.buckets)]
                cumulative.append(("+Inf", running))
                fam.add_metric(labels, cumulative, cells[-1])
            yield fam
        dead = GaugeMetricFamily("pulse_events_dead_letters",
                                 "Rejected events currently kept in the dead-letter store.")
        dead.add_metric([], len(self.store.dead_letters))
        yield dead


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if float(bound).is_integer() else repr(float(bound))


def limits_of(section) -> Limits:
    """The request limits of an `exporters.events` config section."""
    return Limits(max_body_bytes=section.max_body_bytes,
                  max_events_per_batch=section.max_events_per_batch,
                  max_event_bytes=section.max_event_bytes,
                  max_properties_depth=section.max_properties_depth)


def create_app(cfg: Config, registry: CollectorRegistry | None = None, client=None) -> Flask:
    """The intake's WSGI app: the ingest endpoints, dead letters, /metrics and health."""
    registry = registry or CollectorRegistry()
    section = cfg.exporters.events
    mapping = load_mapping(section.mapping or None, cfg.privacy.pii_patterns.values())
    jetstream = section.log.kind == "jetstream"
    if jetstream:
        from exporters.events.jetstream import JetStreamLog

        store = JetStreamLog(cfg, client)
    else:
        store = EventStore(
            Path(cfg.data_dir) / "events", mapping.metrics,
            batch_window_seconds=parse_duration(section.idempotency_window),
            max_batches=section.idempotency_max_batches,
            event_id_window=section.event_id_window, dead_letter_max=section.dead_letter_max,
            checkpoint_bytes=section.checkpoint_bytes,
            free_space_floor=section.free_space_floor, max_commit_queue=section.max_commit_queue,
            retry_after_disk_full=parse_duration(section.retry_after_disk_full),
            retry_after_queue_full=parse_duration(section.retry_after_queue_full))
    duration = Histogram("pulse_ingest_batch_duration_seconds",
                         "Time to validate, map and durably commit one accepted request.",
                         buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                         registry=registry)
    refused = Counter("pulse_ingest_requests_rejected_total",
                      "Whole requests refused (malformed, over a limit, log unavailable).",
                      ["reason"], registry=registry)
    table = load_table(section.segment_translation or None)
    intake = Intake(store, mapping, limits_of(section), observe_duration=duration.observe,
                    count_request_rejection=lambda code: refused.labels(code).inc(),
                    late_after=parse_duration(section.late_after),
                    categories=frozenset(r.category for r in table.others.values()),
                    pii_patterns=dict(cfg.privacy.pii_patterns))
    # With the JetStream log the counts (and dead letters) are the aggregators' to export.
    collectors = [] if jetstream else [("events", EventsCollector(store))]

    app = Flask(__name__)
    app.config["PULSE"] = cfg
    app.extensions["pulse.events"] = intake
    if section.profiles.enabled and "salt" not in cfg.privacy:
        log.warning("per-user profiling is off: privacy.salt is not set")
    elif section.profiles.enabled and not jetstream:  # jetstream: profiled by aggregators
        sink = profile_sink(cfg)
        collectors.append(("profiles", sink.collector))
        intake.add_sink(sink)
    if "salt" in cfg.privacy:
        # Experiments count units, not events: the per-unit rows need the pseudonym's salt.
        intake.add_sink(experiment_sink(cfg))
    else:
        log.warning("experiment results per unit are off: privacy.salt is not set")
    registry.register(ScrapeCollector(collectors))
    add_standard_routes(app, registry, COMPONENT)

    @app.get("/api/openapi.json")
    def openapi():
        """The intake's OpenAPI document (seed endpoints and /v1/*)."""
        return document()

    add_access(app, cfg, COMPONENT)
    if jetstream:
        add_rejected_route(app, section.dead_letter_max,
                           lambda limit: aggregated_rejected(cfg, limit))
    else:
        add_rejected_route(app, section.dead_letter_max,
                           lambda limit: (store.rejected(limit), len(store.dead_letters)))

    translator = Translator(table, section.consent_field)
    # Ingest is served in front of Flask: its 401/403 (a bad write key, an Origin refused)
    # go into the same audit chain as Flask's.
    app.wsgi_app = IngestMiddleware(app.wsgi_app, intake, Sources(section.sources), translator,
                                    audit=app.extensions["pulse.audit"].append)
    return app


def add_rejected_route(app: Flask, maximum: int, read) -> None:
    """Mount GET /api/analytics/events/rejected (admin or engineer token; app has
    `add_access`); read(limit) -> (newest first, how many kept)."""

    @app.get("/api/analytics/events/rejected")
    @guard("events:dead_letters")
    def rejected():
        """The newest dead letters (rejected events with their reason), newest first."""
        raw = request.args.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            return {"error": {"code": "invalid_parameter",
                              "message": f"limit must be an integer from 1 to {maximum}",
                              "details": [{"field": "limit", "problem": "out of range"}]}}, 400
        items, kept = read(int(raw))
        return {"rejected": items, "count": len(items), "kept": kept}


def aggregated_rejected(cfg: Config, limit: int) -> tuple[list[dict], int]:
    """The newest dead letters across every aggregator (each holds its partitions')."""
    import requests

    from pulse.config import listen_list

    items, kept = [], 0
    for address in listen_list(cfg.exporters.events.aggregators.listen):
        try:
            # The caller's token, already checked here, is what the aggregator checks too.
            doc = requests.get(f"http://{address}/api/analytics/events/rejected",
                               params={"limit": limit}, timeout=5, headers={
                                   "Authorization": request.headers.get("Authorization", "")
                               }).json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("dead letters of aggregator %s not readable: %s", address, exc)
            continue
        items += doc.get("rejected", [])
        kept += doc.get("kept", 0)
    items.sort(key=lambda d: d.get("receivedAt", ""), reverse=True)
    return items[:limit], kept
