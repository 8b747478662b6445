"""The bridge's services: built once per app by `init_app`, reached with `service(app, key)`.

Keys name what `app.extensions` holds; a view asks `service(current_app, RULES)`, never
builds a service itself and never reaches one through another blueprint.
"""

from __future__ import annotations

import time

from flask import Flask

PROMETHEUS = "pulse.prometheus"        # pulse.promapi.PrometheusClient
ALERTMANAGER = "pulse.alertmanager"    # pulse.promapi.AlertmanagerClient
RULES = "pulse.rulestore"              # rule_store.RuleStore (rules API and ruler API)
RULER = "pulse.ruler"                  # ruler.Ruler (tenants' namespaces over RULES)
INCIDENTS = "pulse.incidents"          # incidents.IncidentStore
DELIVERY = "pulse.delivery"            # delivery.Delivery (webhook, test notifications)
EXPERIMENTS = "pulse.experiments"      # experiments.ExperimentStore
REPORT_SCHEDULER = "pulse.report_scheduler"  # reports.scheduler.ReportScheduler, if scheduled
CLOCK = "pulse.clock"                  # optional: a callable giving Unix seconds (tests)


def service(app: Flask, key: str):
    """The service the app holds under key (built by init_app)."""
    try:
        return app.extensions[key]
    except KeyError:
        raise RuntimeError(f"the bridge service {key!r} is not built; "
                           "bridge.create_app builds every service") from None


def now(app: Flask) -> float:
    """The app's clock (time.time unless a test set CLOCK)."""
    return app.extensions.get(CLOCK, time.time)()


def init_app(app: Flask) -> None:
    """Build every service of the bridge once, in dependency order."""
    # Imported here: the service modules import this package's keys.
    from bridge.services import delivery, experiments, incidents, reports, rule_store, ruler
    from pulse.promapi import AlertmanagerClient, PrometheusClient

    cfg = app.config["PULSE"]
    app.extensions[PROMETHEUS] = PrometheusClient(cfg.prometheus.url)
    app.extensions[ALERTMANAGER] = AlertmanagerClient(cfg.alertmanager.url)
    incidents.init_app(app)
    rule_store.init_app(app)
    ruler.init_app(app)
    delivery.init_app(app)
    experiments.init_app(app)
    reports.init_app(app)
