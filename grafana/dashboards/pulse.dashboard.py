"""Pulse itself: ingest, rejections, dead letters, scrape health, rule reloads, notifications."""

from grafana.lib import dashboard, stat, steps, table, target, timeseries

dashboard = dashboard(
    uid="pulse-self",
    title="Pulse / Pulse itself",
    description="Is the analytics pipeline healthy: events in and rejected, dead letters, "
    "scrape and collector health, bridge rule reloads and notification delivery.",
    audience="admin",
    time_from="now-6h",
    refresh="30s",
    tags=["self"],
    panels=[
        stat("Ingest rate", "Events accepted per second by the intake.", "cps",
             [target("sum(rate(pulse_events_received_total[$__rate_interval]))", "events/s")]),
        stat("Rejection ratio", "Events rejected per event received.", "percentunit",
             [target("sum(rate(pulse_events_rejected_total[$__rate_interval])) / "
                     "(sum(rate(pulse_events_received_total[$__rate_interval])) + "
                     "sum(rate(pulse_events_rejected_total[$__rate_interval])))", "rejected")],
             thresholds=steps(("green", 0), ("orange", 0.05), ("red", 0.2))),
        stat("Targets down", "Scrape targets not answering now.", "short",
             [target("count(up == 0) or vector(0)", "down")],
             thresholds=steps(("green", 0), ("red", 1))),
        stat("Dead letters", "Events moved to the dead-letter spool over the range.", "short",
             [target("sum(increase(pulse_events_dead_lettered_total[$__range]))",
                     "dead letters")],
             thresholds=steps(("green", 0), ("orange", 1))),
        timeseries("Events received and rejected", "Events per second accepted, and rejected "
                   "by reason.", "cps",
                   [target("sum(rate(pulse_events_received_total[$__rate_interval]))",
                           "received"),
                    target("sum by (reason) (rate(pulse_events_rejected_total"
                           "[$__rate_interval]))", "rejected {{reason}}", ref="B")]),
        timeseries("Ingest batch duration p95", "95th percentile time to accept one batch.",
                   "s", [target("histogram_quantile(0.95, sum by (le) "
                                "(rate(pulse_ingest_batch_duration_seconds_bucket"
                                "[$__rate_interval])))", "p95")]),
        table("Scrape targets", "Each scrape job and instance: up (1) or down (0).", "short",
              [target("up", "{{job}}")], thresholds=steps(("red", 0), ("green", 1))),
        table("Collectors", "Each exporter collector: last collection succeeded (1) or not.",
              "short", [target("pulse_scrape_collector_success", "{{collector}}")],
              thresholds=steps(("red", 0), ("green", 1))),
        timeseries("Bridge rule reloads", "Prometheus reloads after rule changes through the "
                   "bridge, per hour by result.", "short",
                   [target("sum by (result) (rate(pulse_bridge_rule_reloads_total"
                           "[$__rate_interval])) * 3600", "{{result}}")]),
        timeseries("Notification delivery", "Notifications per minute by channel and result.",
                   "cpm",
                   [target("sum by (channel, result) (rate(pulse_notifications_total"
                           "[$__rate_interval])) * 60", "{{channel}} {{result}}")]),
    ],
)
