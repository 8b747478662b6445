"""The demo fitness API (`python -m demo.app`), instrumented with exporters/instrument.py."""

from flask import Flask
from prometheus_client import CollectorRegistry

from pulse.config import Config
from pulse.service import add_standard_routes, run_service

COMPONENT = "demo.app"


def create_app(cfg: Config, registry: CollectorRegistry | None = None) -> Flask:
    """The demo API's WSGI app."""
    registry = registry or CollectorRegistry()
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    add_standard_routes(app, registry, COMPONENT)
    return app


if __name__ == "__main__":
    run_service(COMPONENT, create_app, lambda cfg: cfg.demo.listen)
