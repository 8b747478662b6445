"""Pulse itself: ingest, rejections, dead letters, scrape health, rule reloads, notifications."""

from grafana.lib import dashboard, stat, steps, table, target, timeseries

dashboard = dashboard(
    uid="pulse-self",
    title="Pulse / Pulse itself",
    description="Is the analytics pipeline healthy: events in, rejected, late and unmapped, "
    "dead letters, "
    "scrape and collector health, bridge rule reloads and notification delivery.",
    audience="admin",
    time_from="now-6h",
    refresh="30s",
    tags=["self"],
    panels=[
        stat("Ingest rate", "Events accepted per second by the intake.", "cps",
             [target("sum(job:pulse_events_received:rate5m)", "events/s")]),
        stat("Rejection ratio", "Events rejected for reasons other than missing consent, per "
             "event received (consent refusals are privacy working, not bad data).",
             "percentunit",
             [target("max(job:pulse_events_rejected:ratio_rate5m)", "rejected")],
             thresholds=steps(("green", 0), ("orange", 0.05), ("red", 0.2))),
        stat("Targets down", "Scrape targets not answering now.", "short",
             [target("count(up == 0) or vector(0)", "down")],
             thresholds=steps(("green", 0), ("red", 1))),
        stat("Dead letters", "Events moved to the dead-letter store over the range (rejected "
             "as invalid or with a bad checksum; consent refusals are never kept). The newest "
             "are at GET /api/analytics/events/rejected.", "short",
             [target('sum(increase(pulse_events_rejected_total{reason!="no_consent"}'
                     '[$__range]))', "dead letters")],
             thresholds=steps(("green", 0), ("orange", 1))),
        stat("Arrived late", "Share of the events counted over the range that arrived more "
             "than late_after (default 1 h) after they happened (a phone offline, a queue "
             "held back); they are counted at their own time.", "percentunit",
             [target("sum(increase(pulse_events_late_total[$__range])) / "
                     "sum(increase(pulse_events_accepted_total[$__range]))", "late")],
             thresholds=steps(("green", 0), ("orange", 0.05), ("red", 0.2))),
        timeseries("Unmapped events", "Counted events that fed no metric of the mapping, per "
                   "second by eventType and category: a missing mapping rule or translation "
                   "(category other: one no rule names).", "cps",
                   [target("sum by (eventType, category) "
                           "(rate(pulse_events_unmapped_total[$__rate_interval]))",
                           "{{eventType}} {{category}}")]),
        timeseries("Events received and rejected", "Events per second accepted, and rejected "
                   "by reason.", "cps",
                   [target("sum(job:pulse_events_received:rate5m)", "received"),
                    target("reason:pulse_events_rejected:rate5m", "rejected {{reason}}",
                           ref="B")]),
        timeseries("Ingest batch duration p95", "95th percentile time to accept one batch.",
                   "s", [target("job:pulse_ingest_batch_duration_seconds:p95_5m", "{{job}}")]),
        table("Scrape targets", "Each scrape job: share of its targets up (1 = all).",
              "percentunit", [target("job:up:avg", "{{job}}")],
              thresholds=steps(("red", 0), ("green", 1))),
        table("Collectors", "Each exporter collector: last collection succeeded (1) or not.",
              "short", [target("job_collector:pulse_scrape_collector_success:min",
                               "{{collector}}")],
              thresholds=steps(("red", 0), ("green", 1))),
        timeseries("Bridge rule reloads", "Prometheus reloads after rule changes through the "
                   "bridge in the last 15 minutes, by result.", "short",
                   [target("result:pulse_bridge_rule_reloads:increase15m", "{{result}}")]),
        timeseries("Notification delivery", "Notifications per minute by channel and result, "
                   "and the failed share per channel.", "cpm",
                   [target("channel_result:pulse_notifications:rate5m * 60",
                           "{{channel}} {{result}}"),
                    target("channel:pulse_notifications_failed:ratio_rate15m",
                           "{{channel}} failed share", ref="B")],
                   overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                               "properties": [{"id": "unit", "value": "percentunit"},
                                              {"id": "custom.axisPlacement",
                                               "value": "right"}]}]),
    ],
)
