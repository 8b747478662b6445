"""The integrations exporter (`python -m exporters.integrations`)."""

from flask import Flask
from prometheus_client import CollectorRegistry

from pulse.config import Config
from pulse.service import add_standard_routes

COMPONENT = "exporters.integrations"


def create_app(cfg: Config, registry: CollectorRegistry | None = None) -> Flask:
    """The exporter's WSGI app: /metrics and health endpoints."""
    registry = registry or CollectorRegistry()
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    add_standard_routes(app, registry, COMPONENT)
    return app
