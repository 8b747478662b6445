"""The ai exporter (`python -m exporters.ai`): evaluations, drift (PSI), inference latency."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml
from flask import Flask
from prometheus_client import CollectorRegistry, Histogram

from exporters.ai.api import bp, register_error_handlers
from exporters.ai.collectors import DriftCollector, EvaluationsCollector
from exporters.ai.inference import inference_histogram
from exporters.ai.store import AiStore
from exporters.scrape import ScrapeCollector
from pulse.config import Config, parse_duration
from pulse.service import add_access, add_standard_routes

COMPONENT = "exporters.ai"
HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 2 * 1024 * 1024

# Every collector of this exporter, switchable under exporters.ai.collectors.
COLLECTORS = {
    "evaluations": lambda ctx: EvaluationsCollector(ctx.store),
    "drift": lambda ctx: DriftCollector(ctx.store, ctx.min_observations, ctx.clock),
}


@dataclass
class AiContext:
    """What the views and collectors share: the store, limits, the clock, the histogram."""

    store: AiStore
    inference: Histogram
    min_observations: int
    max_models: int
    max_features: int
    clock: object = field(default=time.time)


@cache
def document() -> dict:
    """The exporter's OpenAPI document (openapi.yaml, read once)."""
    return yaml.safe_load((HERE / "openapi.yaml").read_text())


def create_app(cfg: Config, registry: CollectorRegistry | None = None,
               clock=time.time) -> Flask:
    """The exporter's WSGI app: the AI API (a token of bridge.tokens with ai:read or
    ai:write), /metrics and health endpoints."""
    registry = registry or CollectorRegistry()
    section = cfg.exporters.ai
    drift = section.drift
    store = AiStore(Path(cfg.data_dir) / "ai" / "state.json",
                    max_versions=section.max_versions_per_model,
                    bucket_seconds=max(1, int(parse_duration(drift.bucket))),
                    window_seconds=parse_duration(drift.window), clock=clock)
    ctx = AiContext(store=store, inference=inference_histogram(registry),
                    min_observations=drift.min_observations, max_models=section.max_models,
                    max_features=drift.max_features_per_model, clock=clock)
    registry.register(ScrapeCollector((name, make(ctx)) for name, make in COLLECTORS.items()
                                      if section.collectors[name]))
    app = Flask(__name__)
    app.config["PULSE"] = cfg
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions["pulse.ai"] = ctx
    register_error_handlers(app)
    add_standard_routes(app, registry, COMPONENT)
    add_access(app, cfg, COMPONENT)
    app.register_blueprint(bp)
    app.add_url_rule("/api/openapi.json", "openapi", document)
    return app
