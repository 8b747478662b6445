"""The bridge: alert rules by API, Alertmanager webhooks to apprise, the analytics API.

Layout (docs/bridge.md): `bridge.api` holds the resources, thin blueprints that parse a
request, call a service and answer; `bridge.services` holds the domain code (analytics
engine, rule compiler and store, delivery, notifier, incidents, experiments, reports), built
once here by one `init_app` per stateful service and reached through the app
(`bridge.services.service(app, name)`), never through another blueprint. Services raise
plain exceptions (`bridge.services.errors`, `pulse.promapi.PromError`); `bridge.errors` is
the one place that maps them to HTTP. Every JSON body is checked against its OpenAPI schema
by the one validator of `bridge.validation`, compiled once in `create_app`.
"""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry

from bridge import auth, openapi, services
from bridge.api import (
    access,
    ai_performance,
    alert_rules,
    alerts,
    audit,
    dashboards,
    datasets,
    experiments,
    health,
    metrics,
    privacy,
    prometheus_read,
    reports,
    ruler,
    runbooks,
    webhook,
)
from bridge.errors import register_error_handlers
from bridge.validation import validator
from pulse.config import Config, load_config
from pulse.service import add_standard_routes

COMPONENT = "bridge"

# One blueprint per resource; this table is where a reader learns what exists.
BLUEPRINTS = [
    openapi.bp,
    health.bp,
    experiments.bp,
    ai_performance.bp,
    webhook.bp,
    alerts.bp,
    runbooks.bp,
    dashboards.bp,
    alert_rules.bp,
    ruler.bp,
    prometheus_read.bp,
    audit.bp,
    access.bp,
    privacy.bp,
    datasets.bp,
    metrics.bp,
    reports.bp,
]


def create_app(config: Config | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """The bridge's Flask app (config: a loaded Config; default: load pulse.yml)."""
    cfg = config if config is not None else load_config()
    registry = registry or CollectorRegistry()
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    app.config["REGISTRY"] = registry
    app.json.sort_keys = False
    register_error_handlers(app)
    auth.init_app(app)
    services.init_app(app)
    validator()  # every request-body schema compiled now: a broken document fails the start
    add_standard_routes(app, registry, COMPONENT)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    return app
